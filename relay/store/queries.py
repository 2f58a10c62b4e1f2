"""Read functions ``fn(conn, ...) -> plain values``, run on the query pool or the CLI."""

from __future__ import annotations

from codec.commands import COMMAND_NAMES, name_of


def stats(conn) -> dict:
    """What the node holds (``relay stats``)."""
    with conn.transaction():
        by_command = {name_of(COMMAND_NAMES, cmd): n for cmd, n in conn.execute(
            "SELECT command, count(*) FROM frames WHERE response = 254 GROUP BY command ORDER BY command")}
        answers = conn.execute("SELECT count(*) FROM frames WHERE response <> 254").fetchone()[0]
        data = conn.execute("SELECT count(*) FROM realtime").fetchone()[0]
        reissue = conn.execute("SELECT count(*) FROM realtime WHERE reissue").fetchone()[0]
        registry = {s: n for s, n in conn.execute("SELECT sector, count(*) FROM vehicles GROUP BY sector")}
        vehicles_seen = conn.execute("SELECT count(*) FROM latest").fetchone()[0]
        unregistered = conn.execute("SELECT count(*), coalesce(sum(frames), 0)::bigint FROM unregistered").fetchone()
        cursors = {u: (last, delivered) for u, last, delivered in conn.execute(
            "SELECT upstream, last_id, delivered FROM outbox_cursors")}
        # the outbox view: frames marked for an upstream after its cursor (migration 0005)
        backlog = {u: n for u, n in conn.execute("SELECT upstream, count(*) FROM outbox GROUP BY upstream")}
        audit = {f"{a}:{r}": n for a, r, n in conn.execute(
            "SELECT action, result, count(*) FROM audit GROUP BY action, result")}
        logins = conn.execute("SELECT count(*) FROM logins WHERE event = 'login'").fetchone()[0]
        private_data = conn.execute(
            "SELECT count(*) FROM realtime r JOIN vehicles v USING (vin) WHERE v.sector = 'private'").fetchone()[0]
        alarms = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE closed_at IS NULL), "
            "count(*) FILTER (WHERE max_level >= 3) FROM alarms").fetchone()
        piles = conn.execute(
            "SELECT (SELECT count(*) FROM charging_stations), (SELECT count(*) FROM charging_equipment), "
            "(SELECT count(*) FROM charging_connectors), (SELECT count(*) FROM frames "
            "WHERE command BETWEEN 193 AND 197 AND response = 254)").fetchone()
    upstreams = sorted(set(cursors) | set(backlog))
    return {
        "frames": {"by_command": by_command, "answers": answers, "data": data, "reissue": reissue},
        "vehicles": {"registered": sum(registry.values()), "by_sector": registry, "seen": vehicles_seen,
                     "unregistered": unregistered[0], "unregistered_frames": unregistered[1]},
        "private_data_frames": private_data,
        "alarms": {"episodes": alarms[0], "open": alarms[1], "level3": alarms[2]},
        "piles": {"stations": piles[0], "piles": piles[1], "connectors": piles[2], "messages": piles[3]},
        "logins": logins,
        "outbox": {u: {"backlog": backlog.get(u, 0), "delivered": cursors.get(u, (0, 0))[1]} for u in upstreams},
        "audit": audit,
    }


def data_frame_count(conn, private: bool | None = None) -> int:
    sql = "SELECT count(*) FROM realtime r"
    if private is not None:
        sql += " JOIN vehicles v USING (vin) WHERE " + ("v.sector = 'private'" if private else "v.sector <> 'private'")
    with conn.transaction():
        return conn.execute(sql).fetchone()[0]
