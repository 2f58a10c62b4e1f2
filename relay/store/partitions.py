"""Monthly partitions of the time-series tables, created on first use.

Month boundaries are in +08:00, the standard's zone, so a month's data (as the vehicle
reported it) sits in one partition.
"""

from __future__ import annotations

from datetime import datetime

import psycopg
from psycopg import sql

from codec import CST

#: tables partitioned by collection month
TABLES = ("frames", "realtime", "connector_status", "charging_measurements")


def month_of(when: datetime) -> tuple[int, int]:
    # a collection time comes decoded in CST already (asked for every frame of a batch)
    if when.tzinfo is not CST:
        when = when.astimezone(CST)
    return when.year, when.month


def bounds(year: int, month: int) -> tuple[datetime, datetime]:
    start = datetime(year, month, 1, tzinfo=CST)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=CST)
    return start, end


class Partitions:
    """Remembers which months exist so the writer asks the database once per month."""

    def __init__(self, tables: tuple[str, ...] = TABLES) -> None:
        self.tables = tables
        self._known: set[tuple[str, int, int]] = set()

    def ensure(self, conn: psycopg.Connection, months: set[tuple[int, int]]) -> None:
        for year, month in sorted(months):
            for table in self.tables:
                key = (table, year, month)
                if key in self._known:
                    continue
                start, end = bounds(year, month)
                conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})")
                             .format(sql.Identifier(f"{table}_{year:04d}{month:02d}"), sql.Identifier(table),
                                     sql.Literal(start), sql.Literal(end)))
                self._known.add(key)

    def missing(self, months: set[tuple[int, int]]) -> bool:
        """Whether some month of ``months`` is not known to exist yet (then call ensure)."""
        return any((table, year, month) not in self._known for year, month in months for table in self.tables)

    def forget(self) -> None:
        """After a rolled-back transaction the cache may claim months that do not exist."""
        self._known.clear()
