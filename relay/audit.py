"""The audit log: every login, refusal, API access and configuration change.

Entries are buffered on the reactor and written in small batches on the query pool, so
a burst of refusals costs one round trip. Each entry is also a structured log line.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import structlog
from twisted.internet.defer import maybeDeferred

log = structlog.get_logger("relay.audit")


def _insert(conn, rows: list[tuple]) -> int:
    with conn.transaction():
        conn.cursor().executemany(
            "INSERT INTO audit (at, actor, action, target, result, detail) VALUES (%s, %s, %s, %s, %s, %s)", rows)
    return len(rows)


#: audit entries kept in memory while the database refuses them; beyond this many the
#: oldest are dropped (each one is still in the log as its ``audit`` line)
MAX_PENDING = 10_000

#: the longest wait between two attempts to write kept entries (seconds); the wait starts
#: at ``flush_interval`` and doubles after each failed attempt
MAX_RETRY_DELAY = 30.0


class Audit:
    """Buffers audit entries and writes them in batches. A batch that cannot be written is
    kept and written with the next one, retried with growing delays (``flush_interval``
    doubling up to ``max_retry_delay``); at most ``max_pending`` entries are kept, the
    oldest dropped first (``audit_rows_dropped``). On stop, one last attempt is made;
    entries it cannot write are dropped (``audit_rows_dropped``, ``reason=node_stopping``)."""

    def __init__(self, reactor, pool, flush_interval: float = 0.2, *, max_pending: int = MAX_PENDING,
                 max_retry_delay: float = MAX_RETRY_DELAY) -> None:
        self.reactor = reactor
        self.pool = pool
        self.flush_interval = flush_interval
        self.max_pending = max_pending
        self.max_retry_delay = max_retry_delay
        self._rows: list[tuple] = []
        self._timer = None
        self._busy = None
        self._delay = flush_interval  # before the next attempt; grows while writes fail
        self._dropped = 0  # dropped over the cap and not reported yet
        self._stopping = False

    @property
    def pending(self) -> int:
        """Entries waiting to be written (kept after failures included, the batch being
        written not)."""
        return len(self._rows)

    def record(self, actor: str, action: str, result: str, target: str = "", **detail) -> None:
        at = datetime.fromtimestamp(self.reactor.seconds(), timezone.utc)
        log.info("audit", actor=actor, action=action, target=target, result=result, **detail)
        self._rows.append((at, actor, action, target, result, json.dumps(detail, default=str)))
        self._keep_within_cap()
        if self._timer is None and self._busy is None and not self._stopping:
            self._timer = self.reactor.callLater(self.flush_interval, self.flush)

    def _keep_within_cap(self) -> None:
        over = len(self._rows) - self.max_pending
        if over > 0:
            del self._rows[:over]
            self._dropped += over

    def _report_dropped(self, reason: str = "over_cap") -> None:
        if self._dropped:
            log.error("audit_rows_dropped", count=self._dropped, reason=reason, kept=len(self._rows),
                      cap=self.max_pending)
            self._dropped = 0

    def flush(self):
        self._timer = None
        self._report_dropped()
        if self._busy is not None or not self._rows or self.pool is None:
            return self._busy
        rows, self._rows = self._rows, []
        d = self.pool.run(_insert, rows)

        def written(result):
            self._delay = self.flush_interval
            return result

        def failed(f):
            # keep the batch, ahead of what was recorded meanwhile, and try again later
            self._rows[:0] = rows
            self._keep_within_cap()
            if not self._stopping:
                self._delay = min(self._delay * 2, self.max_retry_delay)
            log.error("audit_write_failed", error=f.getErrorMessage(), entries=len(rows), kept=len(self._rows),
                      retry_in=None if self._stopping else self._delay)
            self._report_dropped()

        def done(result):
            self._busy = None
            if self._rows and self._timer is None and not self._stopping:
                self._timer = self.reactor.callLater(self._delay, self.flush)
            return result

        d.addCallbacks(written, failed)
        d.addBoth(done)
        self._busy = d
        return d

    def stop(self):
        """Write what is pending (one attempt, after the batch in flight); drop what that
        attempt cannot write. No timer is left behind."""
        self._stopping = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._busy is not None:
            d = self._busy.addBoth(lambda _: self.flush())
        else:
            d = maybeDeferred(self.flush)
        return d.addCallback(self._abandon)

    def _abandon(self, result):
        self._dropped += len(self._rows)
        self._rows = []
        self._report_dropped("node_stopping")
        return result
