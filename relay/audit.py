"""The audit log: every login, refusal, API access and configuration change.

Entries are buffered on the reactor and written in small batches on the query pool, so
a burst of refusals costs one round trip. Each entry is also a structured log line.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import structlog

log = structlog.get_logger("relay.audit")


def _insert(conn, rows: list[tuple]) -> int:
    with conn.transaction():
        conn.cursor().executemany(
            "INSERT INTO audit (at, actor, action, target, result, detail) VALUES (%s, %s, %s, %s, %s, %s)", rows)
    return len(rows)


class Audit:
    def __init__(self, reactor, pool, flush_interval: float = 0.2) -> None:
        self.reactor = reactor
        self.pool = pool
        self.flush_interval = flush_interval
        self._rows: list[tuple] = []
        self._timer = None
        self._busy = None

    def record(self, actor: str, action: str, result: str, target: str = "", **detail) -> None:
        at = datetime.fromtimestamp(self.reactor.seconds(), timezone.utc)
        log.info("audit", actor=actor, action=action, target=target, result=result, **detail)
        self._rows.append((at, actor, action, target, result, json.dumps(detail, default=str)))
        if self._timer is None and self._busy is None:
            self._timer = self.reactor.callLater(self.flush_interval, self.flush)

    def flush(self):
        self._timer = None
        if self._busy is not None or not self._rows or self.pool is None:
            return self._busy
        rows, self._rows = self._rows, []
        d = self.pool.run(_insert, rows)

        def done(result):
            self._busy = None
            if self._rows and self._timer is None:
                self._timer = self.reactor.callLater(self.flush_interval, self.flush)
            return result

        d.addErrback(lambda f: log.error("audit_write_failed", error=f.getErrorMessage(), entries=len(rows)))
        d.addBoth(done)
        self._busy = d
        return d

    def stop(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._busy is not None:
            return self._busy.addBoth(lambda _: self.flush())
        return self.flush()
