"""The three tiers as ``relay run`` processes (tests/support/processes.py): the configs of
the province JS32, the city NJ3201 and the enterprise ENT01 of the process tests, a free
loopback port for a node that must come back on the same one, and the link-online check.

Used by tests/integration/test_node_processes.py and tests/chaos/test_sigkill.py.
"""

from __future__ import annotations

import socket

from .nodes import ENT01_HASH, NANJING_HASH, enterprise_config, platform_config, upstream
from .processes import NodeProcess, write_config


def free_port() -> int:
    """A loopback port nothing listens on now (for a node restarted on the same port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loopback(port: int) -> str:
    """The listener endpoint of ``port`` on 127.0.0.1 (0: any free port)."""
    return f"tcp:{port}:interface=127.0.0.1"


def node_file(raw: dict, tmp_path, name: str):
    """Write ``raw`` (a node config) as ``tmp_path/<name>.yaml``, logging at info."""
    return write_config(tmp_path / f"{name}.yaml", {**raw, "data_dir": str(tmp_path / name),
                                                    "log": {"level": "info", "format": "logfmt"}})


def provincial(dsn: str, port: int = 0) -> dict:
    """The province: accounts for the city (``nanjing``) and the enterprise (``ent01``)."""
    return platform_config("provincial", "JS32", dsn, region="32", endpoint=loopback(port), accounts=[
        {"username": "nanjing", "password_hash": NANJING_HASH, "allowed_owners": ["ENT01"]},
        {"username": "ent01", "password_hash": ENT01_HASH, "allowed_owners": ["ENT01"]}])


def municipal(dsn: str, port: int, provincial_port: int) -> dict:
    """The city on ``port``, forwarding to the province."""
    return platform_config("municipal", "NJ3201", dsn, region="3201", endpoint=loopback(port),
                           accounts=[{"username": "ent01", "password_hash": ENT01_HASH, "allowed_owners": ["ENT01"]}],
                           upstreams=[upstream("provincial", provincial_port, "nanjing", "nanjing-demo", "NJ3201",
                                               regions=["32"])])


def enterprise(dsn: str, municipal_port: int, provincial_port: int | None = None, **terminals) -> dict:
    """The enterprise, forwarding to the city (and to the province when its port is given);
    ``terminals``: options of its terminal listener (``endpoint``, ``answer_realtime``, ...)."""
    ups = [upstream("municipal", municipal_port, "ent01", "ent01-demo", "ENT01", regions=["3201"])]
    if provincial_port is not None:
        ups.append(upstream("provincial", provincial_port, "ent01", "ent01-demo", "ENT01", regions=["32"]))
    return enterprise_config(dsn, upstreams=ups, **terminals)


def online(proc: NodeProcess, upstream_name: str):
    """A check for ``until``: has the current run of ``proc`` logged its link to
    ``upstream_name`` online?"""
    return lambda: proc.proto.has_event("upstream_link_state", upstream=upstream_name, state="online")


async def kill_mid_stream(proc: NodeProcess, dsns: dict[str, str], fleet_size: int) -> int:
    """Once data reaches the province, SIGKILL ``proc`` and wait until the enterprise has
    stored three more frames per vehicle while it is dead; the enterprise's count at the
    kill."""
    from twisted.internet import reactor

    from .counts import DATA, at_least, scalar
    from .wait import until

    await until(reactor, at_least(dsns["provincial"], DATA, 20), 20, every=0.1, what="frames at the province")
    killed = await proc.kill()
    assert killed.signal == 9, proc.output()
    stored_at_kill = await scalar(dsns["enterprise"], DATA)
    await until(reactor, at_least(dsns["enterprise"], DATA, stored_at_kill + 3 * fleet_size), 20, every=0.1,
                what=f"frames stored while the {proc.name} node is dead")
    return stored_at_kill


async def stop_after_more(sim, dsn: str, more: int) -> None:
    """Once the node at ``dsn`` has stored ``more`` data frames beyond what it holds now,
    end ``sim``'s run: the events a test waited for are behind it, and frames still came
    after them however long they took on this machine."""
    from twisted.internet import reactor

    from .counts import DATA, at_least, scalar
    from .wait import until

    now = await scalar(dsn, DATA)
    await until(reactor, at_least(dsn, DATA, now + more), 20, every=0.1, what=f"{more} more frames stored")
    sim.stop()


__all__ = ["free_port", "loopback", "node_file", "provincial", "municipal", "enterprise", "online", "kill_mid_stream",
           "stop_after_more"]
