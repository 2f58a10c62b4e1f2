"""Shared fixtures: a real PostgreSQL, one fresh database per test, and error observation.

The server is ``RELAY_TEST_DSN`` (CI: postgresql://postgres@127.0.0.1:5432/postgres) or,
when unset, a private pgserver started for the session. The schema is migrated once into
a template database; each test that asks for ``db_dsn`` gets a clone of it.
"""

from __future__ import annotations

import gc
import os
import uuid

import psycopg
import pytest
from psycopg import sql

from relay.store.migrate import migrate

pytest_plugins = ["tests.support.fixtures"]


def _admin_dsn(base: str) -> str:
    return base


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    """DSN of a server on which tests may create databases."""
    dsn = os.environ.get("RELAY_TEST_DSN")
    if dsn:
        yield dsn
        return
    from relay.store.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg"))
    yield server.start()
    server.stop()


@pytest.fixture(scope="session")
def pg_template(pg_server):
    """A migrated template database, dropped at the end of the session."""
    name = f"relay_tmpl_{os.getpid()}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = psycopg.conninfo.make_conninfo(pg_server, dbname=name)
    with psycopg.connect(dsn) as conn:
        migrate(conn)
    yield name
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def clone_database(pg_server: str, template: str) -> tuple[str, str]:
    name = f"relay_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))
    return name, psycopg.conninfo.make_conninfo(pg_server, dbname=name)


def drop_database(pg_server: str, name: str) -> None:
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def db_dsn(pg_server, pg_template):
    """A fresh, migrated database for this test."""
    name, dsn = clone_database(pg_server, pg_template)
    yield dsn
    drop_database(pg_server, name)


@pytest.fixture
def make_db(pg_server, pg_template):
    """Factory for several fresh databases in one test (three tiers)."""
    names = []

    def make() -> str:
        name, dsn = clone_database(pg_server, pg_template)
        names.append(name)
        return dsn

    yield make
    for name in names:
        drop_database(pg_server, name)


@pytest.fixture(autouse=True)
def observe_errors():
    """Fail a test that leaves an unhandled error in a Deferred or logs a Twisted failure."""
    from twisted.logger import globalLogPublisher

    failures = []

    def observer(event):
        if event.get("log_failure") is not None or event.get("isError"):
            failures.append(event)

    globalLogPublisher.addObserver(observer)
    yield failures
    gc.collect()
    globalLogPublisher.removeObserver(observer)
    if failures:
        from twisted.logger import formatEvent

        texts = []
        for e in failures:
            f = e.get("log_failure")
            texts.append(formatEvent(e) + ("\n" + f.getTraceback() if f is not None else ""))
        failures.clear()
        pytest.fail("unhandled errors were logged:\n" + "\n".join(texts))
