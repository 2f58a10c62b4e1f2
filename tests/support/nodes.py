"""Real nodes on loopback for integration tests, and a scripted terminal/platform client."""

from __future__ import annotations

from twisted.internet import protocol
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint

import codec
from codec import Frame, FrameReader
from relay.config import config_from_dict
from relay.node import Node

from .wait import until

ENT01_HASH = ("scrypt$16384$8$1$00112233445566778899aabbccddeeff$"
              "d399d4c1d347d4d782420ed697cdc0331189063da5b6ea2654aad604df7e9aab")  # "ent01-demo"
NANJING_HASH = ("scrypt$16384$8$1$ffeeddccbbaa99887766554433221100$"
                "cb9a7e6e261996c4d73025bd6e464bd9ed6fdf9882bd29f179e01d777a055008")  # "nanjing-demo"


def enterprise_config(dsn: str, upstreams: list[dict] | None = None, **terminals) -> dict:
    return {"role": "enterprise", "node_id": "ENT01", "database": {"dsn": dsn, "batch_interval_ms": 10},
            "listeners": {"terminals": {"endpoint": "tcp:0:interface=127.0.0.1", **terminals}},
            "upstreams": upstreams or []}


def upstream(name: str, port: int, username: str, password: str, platform_id: str, **extra) -> dict:
    return {"name": name, "endpoint": f"tcp:host=127.0.0.1:port={port}", "username": username, "password": password,
            "platform_id": platform_id, "heartbeat_interval": 1.0, "login_timeout": 5.0,
            "retry": {"initial_delay": 0.1, "max_delay": 0.5}, **extra}


def platform_config(role: str, node_id: str, dsn: str, accounts: list[dict], region: str = "",
                    upstreams: list[dict] | None = None, endpoint: str = "tcp:0:interface=127.0.0.1") -> dict:
    return {"role": role, "node_id": node_id, "region": region,
            "database": {"dsn": dsn, "batch_interval_ms": 10},
            "listeners": {"platforms": {"endpoint": endpoint}}, "accounts": accounts,
            "upstreams": upstreams or []}


async def start(reactor, raw: dict) -> Node:
    cfg = config_from_dict(raw, f"test:{raw['node_id']}")
    role = __import__(f"platforms.{cfg.role}", fromlist=["ROLE"]).ROLE
    node = Node(reactor, cfg, role, cfg.database.dsn)
    await node.start()
    return node


class ScriptedClient(protocol.Protocol):
    """Sends frames and collects what comes back, decoded."""

    def __init__(self) -> None:
        self.reader = FrameReader()
        self.received: list[Frame] = []
        self.errors: list = []
        self.lost: Deferred = Deferred()

    def dataReceived(self, data: bytes) -> None:
        for item in self.reader.feed(data):
            (self.received if isinstance(item, Frame) else self.errors).append(item)

    def connectionLost(self, reason=protocol.connectionDone) -> None:
        if not self.lost.called:
            self.lost.callback(None)

    def send(self, *frames: Frame | bytes) -> None:
        for f in frames:
            self.transport.write(f if isinstance(f, bytes) else codec.encode_frame(f))

    async def answers(self, reactor, n: int, timeout: float = 10.0) -> list[Frame]:
        await until(reactor, lambda: len(self.received) >= n, timeout, what=f"{n} answers")
        return self.received[:n]

    async def close(self) -> None:
        if self.transport is not None and self.transport.connected:
            self.transport.loseConnection()
            await self.lost


async def connect(reactor, port: int) -> ScriptedClient:
    client = ScriptedClient()
    await TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(protocol.Factory.forProtocol(lambda: client))
    return client
