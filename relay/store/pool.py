"""Queries on a thread pool: ``run(fn, *args)`` calls ``fn(conn, *args)`` on a worker thread
with a pooled connection and returns a Deferred of its (plain) result.

The Twisted thread pool has as many threads as the connection pool has connections, so a
thread never waits for a connection; the reactor thread never touches the database.
"""

from __future__ import annotations

from typing import Any, Callable

import psycopg
from psycopg_pool import ConnectionPool
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool


class QueryPool:
    def __init__(self, reactor, dsn: str, size: int = 4, name: str = "relay-query") -> None:
        self.reactor = reactor
        self.dsn = dsn
        self.size = size
        self._pool = ConnectionPool(dsn, min_size=1, max_size=size, open=False, name=name,
                                    check=ConnectionPool.check_connection,
                                    kwargs={"application_name": name, "autocommit": False})
        self._threads = ThreadPool(minthreads=0, maxthreads=size, name=name)

    def start(self) -> Deferred:
        self._threads.start()
        return deferToThreadPool(self.reactor, self._threads, self._pool.open, True, 30.0)

    def stop(self) -> Deferred:
        d = deferToThreadPool(self.reactor, self._threads, self._pool.close)

        def done(result):
            self._threads.stop()
            return result

        return d.addBoth(done)

    def _call(self, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        with self._pool.connection() as conn:
            return fn(conn, *args, **kwargs)

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred:
        """Run ``fn(conn, *args)`` in a transaction on a pooled connection."""
        return deferToThreadPool(self.reactor, self._threads, self._call, fn, args, kwargs)

    def run_blocking(self, fn: Callable[..., Any], *args: Any) -> Any:
        """For threads that are not the reactor's (exports stream from a worker)."""
        return self._call(fn, args, {})


def connect(dsn: str, **kwargs: Any) -> psycopg.Connection:
    return psycopg.connect(dsn, **kwargs)
