"""The embedded PostgreSQL: a private server from the ``pgserver`` wheel in the node's
data directory, started before the node and stopped after it.

It lets a newcomer run the relay with nothing else installed. Production nodes give a
DSN and use their own server.
"""

from __future__ import annotations

import os
from pathlib import Path

import structlog

log = structlog.get_logger("relay.store")


class EmbeddedPostgres:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._server = None

    def start(self) -> str:
        """Start (or attach to) the server; return its DSN. Blocking: call from a thread."""
        import pgserver

        self.directory.mkdir(parents=True, exist_ok=True)
        self._server = pgserver.get_server(str(self.directory), cleanup_mode="stop")
        dsn = self._server.get_uri()
        log.info("embedded_postgres_started", directory=str(self.directory), pid=os.getpid())
        return dsn

    def stop(self) -> None:
        if self._server is not None:
            try:
                self._server.cleanup()
            finally:
                self._server = None
                log.info("embedded_postgres_stopped", directory=str(self.directory))
