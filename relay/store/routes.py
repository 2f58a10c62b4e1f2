"""Which bit of ``frames.routes`` stands for which upstream (table ``upstream_routes``).

A frame goes to an upstream when its bit is set (migration 0005: the outbox is a mark on the
archived frame). Names get a bit the first time a node knows them and keep it: a renamed
upstream is a new one, a removed one keeps its bit (and whatever waits for it).
"""

from __future__ import annotations

import psycopg

#: bits of ``frames.routes`` (an integer): at most this many upstreams per database
MAX_UPSTREAMS = 31


def route_bits(conn: psycopg.Connection, names: list[str] | tuple[str, ...]) -> dict[str, int]:
    """The bit of each of ``names``, giving new names the lowest free bits."""
    with conn.transaction():
        known = dict(conn.execute("SELECT name, bit FROM upstream_routes").fetchall())
        if any(n not in known for n in names):
            conn.execute("LOCK TABLE upstream_routes IN SHARE ROW EXCLUSIVE MODE")
            known = dict(conn.execute("SELECT name, bit FROM upstream_routes").fetchall())
            used = set(known.values())
            for name in names:
                if name in known:
                    continue
                free = [b for b in range(MAX_UPSTREAMS) if b not in used]
                if not free:
                    raise ValueError(f"upstream {name!r}: this database already routes to {MAX_UPSTREAMS} "
                                     "upstreams (upstream_routes)")
                conn.execute("INSERT INTO upstream_routes (name, bit) VALUES (%s, %s)", (name, free[0]))
                known[name] = free[0]
                used.add(free[0])
    return {n: known[n] for n in names}
