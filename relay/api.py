"""The node's HTTP JSON API, its OpenAPI document, Prometheus metrics and the dashboard.

Every ``/api/v1`` request carries ``Authorization: Bearer <token>``; tokens come from the
config with a role: ``read`` (queries), ``operate`` (alarm handling, terminal commands),
``admin`` (audit log). Every request is audited (who, what, when, result). Lists are
paginated (``limit`` <= 1000, ``offset``) and answer ``{"items", "total", "limit", "offset"}``.
Exports stream (CSV or JSON lines) without building the result in memory.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from importlib import resources
from urllib.parse import parse_qs

import structlog
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.threads import blockingCallFromThread, deferToThreadPool
from twisted.web import resource, server
from zope.interface import implementer
from twisted.internet.interfaces import IPushProducer

import codec

from . import export as export_mod
from . import monitoring
from .store.queries import stats

log = structlog.get_logger("relay.api")

ROLES = {"read": 0, "operate": 1, "admin": 2}


def hash_token(token: str) -> str:
    return "sha256$" + hashlib.sha256(token.encode("utf-8")).hexdigest()


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _json_default(value):
    if isinstance(value, datetime):
        return value.astimezone(codec.CST).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, timedelta):
        return value.total_seconds()
    raise TypeError(type(value).__name__)


def dumps(obj) -> bytes:
    return json.dumps(obj, default=_json_default, ensure_ascii=False).encode("utf-8")


class Query:
    """Typed access to query-string parameters, with 400 errors naming the parameter."""

    def __init__(self, request) -> None:
        self.args = {k.decode(): [v.decode() for v in vs] for k, vs in request.args.items()}

    def str(self, name: str, default: str | None = None) -> str | None:
        values = self.args.get(name)
        return values[0] if values else default

    def list(self, name: str) -> list[str]:
        return [x for v in self.args.get(name, []) for x in v.split(",") if x]

    def int(self, name: str, default: int | None = None) -> int | None:
        value = self.str(name)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            raise ApiError(400, f"{name}: expected an integer") from None

    def float(self, name: str, default: float | None = None) -> float | None:
        value = self.str(name)
        if value is None:
            return default
        try:
            return float(value)
        except ValueError:
            raise ApiError(400, f"{name}: expected a number") from None

    def bool(self, name: str) -> bool | None:
        value = self.str(name)
        if value is None:
            return None
        if value.lower() in ("1", "true", "yes"):
            return True
        if value.lower() in ("0", "false", "no"):
            return False
        raise ApiError(400, f"{name}: expected true or false")

    def time(self, name: str, default: datetime | None = None) -> datetime | None:
        value = self.str(name)
        if value is None:
            return default
        try:
            return codec.timefield.parse_iso(value)
        except ValueError:
            raise ApiError(400, f"{name}: expected an ISO 8601 time") from None


@implementer(IPushProducer)
class _ThreadStream:
    """Lets a worker thread write to a request with flow control: each block waits until the
    reactor has handed it to the transport, and a paused transport holds the thread."""

    def __init__(self, reactor, request) -> None:
        self.reactor = reactor
        self.request = request
        self._go = threading.Event()
        self._go.set()
        self.stopped = False
        request.registerProducer(self, True)

    def pauseProducing(self) -> None:
        self._go.clear()

    def resumeProducing(self) -> None:
        self._go.set()

    def stopProducing(self) -> None:
        self.stopped = True
        self._go.set()

    def write(self, data: bytes) -> None:  # on the worker thread
        self._go.wait()
        if self.stopped:
            raise ConnectionError("the client went away")
        blockingCallFromThread(self.reactor, self.request.write, data)


class Api(resource.Resource):
    isLeaf = True

    def __init__(self, reactor, node, tokens, metrics=None) -> None:
        super().__init__()
        self.reactor = reactor
        self.node = node
        self.tokens = {t.token_hash: t for t in tokens}
        self.metrics = metrics
        self.routes: list[tuple[str, re.Pattern, str, str]] = []
        for method, pattern, handler, role in ROUTES:
            self.routes.append((method, re.compile("^" + pattern + "$"), handler, role))
        self.requests = 0

    # -- dispatch --------------------------------------------------------------------
    def render(self, request):
        self.requests += 1
        path = request.path.decode("utf-8", "replace")
        method = request.method.decode("ascii", "replace")
        if path == "/metrics" and self.metrics is not None:
            request.setHeader(b"content-type", self.metrics.content_type.encode())
            return self.metrics.render()
        if path in ("/", "/index.html") or path.startswith("/static/"):
            return self._static(request, path)
        if path == "/api/v1/openapi.json":
            return self._send(request, 200, openapi())
        actor, role = self._auth(request)
        if role is None:
            self._audit(actor, method, path, 401)
            return self._send(request, 401, {"error": "missing or unknown bearer token"})
        for m, pattern, handler, need in self.routes:
            match = pattern.match(path)
            if match and m == method:
                if ROLES[role] < ROLES[need]:
                    self._audit(actor, method, path, 403)
                    return self._send(request, 403, {"error": f"needs the {need} role"})
                return self._call(request, actor, method, path, handler, match.groupdict())
        self._audit(actor, method, path, 404)
        return self._send(request, 404, {"error": f"no {method} {path}"})

    def _auth(self, request) -> tuple[str, str | None]:
        header = (request.getHeader(b"authorization") or b"").decode("latin-1")
        if not header.lower().startswith("bearer "):
            return getattr(request.getClientAddress(), "host", "?"), None
        digest = hash_token(header[7:].strip())
        for known, token in self.tokens.items():
            if hmac.compare_digest(known, digest):
                return token.name, token.role
        return getattr(request.getClientAddress(), "host", "?"), None

    def _call(self, request, actor: str, method: str, path: str, handler: str, params: dict):
        try:
            q = Query(request)
            body = None
            if method == "POST":
                raw = request.content.read(1 << 20)
                try:
                    body = json.loads(raw) if raw.strip() else {}
                except ValueError:
                    raise ApiError(400, "the body is not JSON") from None
            d = maybeDeferred(getattr(self, handler), request, q, body, actor, **params)
        except ApiError as exc:
            self._audit(actor, method, path, exc.status)
            return self._send(request, exc.status, {"error": exc.message})

        def ok(result):
            if result is server.NOT_DONE_YET or request.finished:
                self._audit(actor, method, path, request.code)
                return
            self._audit(actor, method, path, 200 if result is not None else 404)
            if result is None:
                self._finish(request, 404, {"error": "not found"})
            else:
                self._finish(request, 200, result)

        def failed(f):
            status = f.value.status if f.check(ApiError) else (400 if f.check(ValueError) else 500)
            message = f.value.message if f.check(ApiError) else f.getErrorMessage()
            if status == 500:
                log.error("api_error", path=path, error=message)
            self._audit(actor, method, path, status)
            self._finish(request, status, {"error": message})

        d.addCallbacks(ok, failed).addErrback(lambda f: log.error("api_internal_error", error=f.getErrorMessage()))
        return server.NOT_DONE_YET

    def _send(self, request, status: int, obj) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        return dumps(obj)

    def _finish(self, request, status: int, obj) -> None:
        if request._disconnected or request.finished:
            return
        request.write(self._send(request, status, obj))
        request.finish()

    def _audit(self, actor: str, method: str, path: str, status: int) -> None:
        self.node.audit.record(actor, "api", "ok" if status < 400 else "refused", target=f"{method} {path}",
                               status=status)

    def _static(self, request, path: str) -> bytes:
        name = "index.html" if path in ("/", "/index.html") else path[len("/static/"):]
        if not re.match(r"^[A-Za-z0-9_.-]+$", name):
            request.setResponseCode(404)
            return b""
        try:
            data = resources.files("relay").joinpath("dashboard").joinpath(name).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            request.setResponseCode(404)
            return b""
        ctype = {"html": "text/html", "js": "text/javascript", "css": "text/css"}.get(name.rsplit(".", 1)[-1],
                                                                                    "application/octet-stream")
        request.setHeader(b"content-type", f"{ctype}; charset=utf-8".encode())
        return data

    # -- helpers ------------------------------------------------------------------------
    def now(self) -> datetime:
        return datetime.fromtimestamp(self.reactor.seconds(), timezone.utc)

    def run(self, fn, *args, **kwargs) -> Deferred:
        return self.node.pool.run(fn, *args, **kwargs)

    def period(self, q: Query, days: float = 1.0) -> tuple[datetime, datetime]:
        until = q.time("to", self.now())
        since = q.time("from", until - timedelta(days=days))
        if until <= since:
            raise ApiError(400, "to must be after from")
        return since, until

    # -- handlers ------------------------------------------------------------------------
    def h_stats(self, request, q, body, actor):
        return self.run(stats)

    def h_vehicles(self, request, q, body, actor):
        return self.run(monitoring.vehicles, now=self.now(), sector=q.str("sector"), region=q.str("region"),
                        owner=q.str("owner"), online=q.bool("online"), charging=q.bool("charging"),
                        min_alarm_level=q.int("alarm_level"), limit=q.int("limit", 100), offset=q.int("offset", 0),
                        online_seconds=q.float("online_seconds", self.node.cfg.http.online_seconds))

    def h_vehicle(self, request, q, body, actor, vin):
        return self.run(monitoring.latest_state, vin)

    def h_archive(self, request, q, body, actor, vin):
        hz = self.node.cfg.hazards
        return self.run(monitoring.archive, vin, now=self.now(), public_days=hz.offline_days_public,
                        private_days=hz.offline_days_private, frequent=hz.frequent_alarms,
                        window_hours=hz.frequent_alarms_window_hours)

    def h_quality(self, request, q, body, actor, vin):
        since, until = self.period(q, days=1)
        return self.run(monitoring.data_quality, vin, since, until, interval_s=q.float("interval", 10.0))

    def h_series(self, request, q, body, actor, vin):
        since, until = self.period(q, days=1)
        return self.run(monitoring.series, vin, since, until, limit=q.int("limit", 5000))

    def h_positions(self, request, q, body, actor):
        return self.run(monitoring.positions, limit=q.int("limit", 20000))

    def h_alarms(self, request, q, body, actor):
        return self.run(monitoring.alarms, vin=q.str("vin"), min_level=q.int("level"), open_only=q.bool("open"),
                        since=q.time("from"), until=q.time("to"), limit=q.int("limit", 100),
                        offset=q.int("offset", 0))

    def h_alarm_stats(self, request, q, body, actor):
        since, until = self.period(q, days=30)
        by = q.str("by", "level")
        if by not in monitoring._STATS_BY:
            raise ApiError(400, f"by: one of {', '.join(monitoring._STATS_BY)}")
        return self.run(monitoring.alarm_stats, by, since, until)

    def h_alarm_action(self, request, q, body, actor, alarm_id, action):
        note = str((body or {}).get("note", ""))[:500]
        return self.run(monitoring.alarm_update, int(alarm_id), action, actor, self.now(), note)

    def h_offline(self, request, q, body, actor):
        hz = self.node.cfg.hazards
        return self.run(monitoring.offline, now=self.now(), public_days=q.float("public_days", hz.offline_days_public),
                        private_days=q.float("private_days", hz.offline_days_private), limit=q.int("limit", 100),
                        offset=q.int("offset", 0))

    def h_clusters(self, request, q, body, actor):
        hz = self.node.cfg.hazards
        d = self.run(monitoring.clusters, now=self.now(), radius_m=q.float("radius_m", hz.cluster_radius_m),
                     min_vehicles=q.int("min_vehicles", hz.cluster_min_vehicles),
                     min_hours=q.float("min_hours", hz.cluster_min_hours))
        return d.addCallback(lambda items: {"items": items, "total": len(items)})

    def h_frequent(self, request, q, body, actor):
        hz = self.node.cfg.hazards
        d = self.run(monitoring.frequent_alarms, now=self.now(), count=q.int("count", hz.frequent_alarms),
                     window_hours=q.float("window_hours", hz.frequent_alarms_window_hours))
        return d.addCallback(lambda items: {"items": items, "total": len(items)})

    def h_storage(self, request, q, body, actor):
        return self.run(monitoring.storage, now=self.now(), free_bytes=self.node.free_bytes(), sample=False)

    def h_charging(self, request, q, body, actor):
        return self.run(monitoring.charging_overview, now=self.now(), offline_days=q.float("offline_days", 7.0))

    def h_audit(self, request, q, body, actor):
        return self.run(_audit_list, actor=q.str("actor"), action=q.str("action"), since=q.time("from"),
                        limit=q.int("limit", 100), offset=q.int("offset", 0))

    def h_export(self, request, q, body, actor):
        vins = q.list("vin")
        since, until = q.time("from"), q.time("to")
        if since is None or until is None:
            raise ApiError(400, "from and to are required")
        fmt = q.str("format", "csv")
        try:
            export_mod.check(vins, since, until, fmt)
        except export_mod.ExportError as exc:
            raise ApiError(400, str(exc)) from None
        request.setResponseCode(200)
        request.setHeader(b"content-type", b"text/csv; charset=utf-8" if fmt == "csv" else
                          b"application/x-ndjson; charset=utf-8")
        request.setHeader(b"content-disposition", f'attachment; filename="export.{fmt}"'.encode())
        stream = _ThreadStream(self.reactor, request)
        d = deferToThreadPool(self.reactor, self.node.export_threads, self.node.pool.run_blocking,
                              export_mod.export, vins, since, until, fmt, stream.write)

        def done(result):
            request.unregisterProducer()
            if not request.finished and not request._disconnected:
                request.finish()
            log.info("export_finished", actor=actor, rows=result["rows"], bytes=result["bytes"], vehicles=len(vins))

        def failed(f):
            request.unregisterProducer()
            log.warning("export_failed", actor=actor, error=f.getErrorMessage())
            if not request.finished and not request._disconnected:
                request.finish()

        d.addCallbacks(done, failed)
        return server.NOT_DONE_YET

    def h_command(self, request, q, body, actor, vin):
        terminals = self.node.terminals
        if terminals is None:
            raise ApiError(404, "this node has no terminal listener")
        frame = _command_frame(vin, body or {}, self.now())
        from .session import CommandTimeout, SessionGone

        try:
            d = terminals.send_command(vin, frame)
        except SessionGone as exc:
            raise ApiError(409, str(exc)) from None
        except ValueError as exc:
            raise ApiError(409, str(exc)) from None
        self.node.audit.record(actor, "terminal_command", "sent", target=vin, command=frame.command)

        def answered(answer):
            return {"vin": vin, "answer": codec.frame_to_json(answer)}

        def failed(f):
            if f.check(CommandTimeout, SessionGone):
                raise ApiError(504, f.getErrorMessage())
            return f

        return d.addCallbacks(answered, failed)


def _command_frame(vin: str, body: dict, now: datetime) -> codec.Frame:
    from codec.params import CONTROL_IDS, PARAMETER_IDS

    kind = body.get("command")
    when = now.astimezone(codec.CST).replace(microsecond=0)
    if kind == "query_params":
        ids = [PARAMETER_IDS[i] if isinstance(i, str) else int(i) for i in body.get("ids", [])]
        if not ids:
            raise ApiError(400, "ids: give at least one parameter id or name")
        cmd, payload = codec.Command.QUERY_PARAMS, codec.ParamQuery(when, tuple(ids))
    elif kind == "set_params":
        values = body.get("params") or {}
        try:
            pairs = tuple((PARAMETER_IDS[k] if not str(k).isdigit() else int(k), v) for k, v in values.items())
        except KeyError as exc:
            raise ApiError(400, f"params: unknown parameter {exc}") from None
        cmd, payload = codec.Command.SET_PARAMS, codec.ParamList(when, pairs)
    elif kind == "terminal_control":
        control = body.get("control")
        cid = CONTROL_IDS.get(control) if isinstance(control, str) else control
        if cid is None:
            raise ApiError(400, f"control: one of {', '.join(CONTROL_IDS)}")
        cmd, payload = codec.Command.TERMINAL_CONTROL, codec.TerminalControl(
            when, int(cid), bytes.fromhex(body.get("params_hex", "")))
    else:
        raise ApiError(400, "command: query_params, set_params or terminal_control")
    edition = codec.Edition(str(body.get("protocol", "2016")))
    return codec.Frame(edition, cmd, codec.Response.COMMAND, vin, codec.Encryption.NONE, payload)


def _audit_list(conn, *, actor=None, action=None, since=None, limit=100, offset=0) -> dict:
    limit, offset = monitoring._page(limit, offset)
    where, args = [], []
    if actor:
        where.append("actor = %s")
        args.append(actor)
    if action:
        where.append("action = %s")
        args.append(action)
    if since:
        where.append("at >= %s")
        args.append(since)
    cond = ("WHERE " + " AND ".join(where)) if where else ""
    with conn.transaction():
        total = conn.execute(f"SELECT count(*) FROM audit {cond}", args).fetchone()[0]
        cur = conn.execute(f"SELECT * FROM audit {cond} ORDER BY id DESC LIMIT %s OFFSET %s", [*args, limit, offset])
        return {"items": monitoring._rows(cur), "total": total, "limit": limit, "offset": offset}


VIN = r"(?P<vin>[A-Z0-9]{17})"
#: (method, path pattern, handler, least role), also the source of the OpenAPI document
ROUTES = [
    ("GET", r"/api/v1/stats", "h_stats", "read"),
    ("GET", r"/api/v1/vehicles", "h_vehicles", "read"),
    ("GET", rf"/api/v1/vehicles/{VIN}", "h_vehicle", "read"),
    ("GET", rf"/api/v1/vehicles/{VIN}/archive", "h_archive", "read"),
    ("GET", rf"/api/v1/vehicles/{VIN}/quality", "h_quality", "read"),
    ("GET", rf"/api/v1/vehicles/{VIN}/series", "h_series", "read"),
    ("POST", rf"/api/v1/vehicles/{VIN}/commands", "h_command", "operate"),
    ("GET", r"/api/v1/positions", "h_positions", "read"),
    ("GET", r"/api/v1/alarms", "h_alarms", "read"),
    ("GET", r"/api/v1/alarms/stats", "h_alarm_stats", "read"),
    ("POST", r"/api/v1/alarms/(?P<alarm_id>\d+)/(?P<action>acknowledge|handle)", "h_alarm_action", "operate"),
    ("GET", r"/api/v1/hazards/offline", "h_offline", "read"),
    ("GET", r"/api/v1/hazards/clusters", "h_clusters", "read"),
    ("GET", r"/api/v1/hazards/frequent-alarms", "h_frequent", "read"),
    ("GET", r"/api/v1/export", "h_export", "read"),
    ("GET", r"/api/v1/storage", "h_storage", "read"),
    ("GET", r"/api/v1/charging", "h_charging", "read"),
    ("GET", r"/api/v1/audit", "h_audit", "admin"),
]

_PARAMS = {
    "h_vehicles": ["sector", "region", "owner", "online", "charging", "alarm_level", "limit", "offset"],
    "h_quality": ["from", "to", "interval"],
    "h_series": ["from", "to", "limit"],
    "h_alarms": ["vin", "level", "open", "from", "to", "limit", "offset"],
    "h_alarm_stats": ["by", "from", "to"],
    "h_offline": ["public_days", "private_days", "limit", "offset"],
    "h_clusters": ["radius_m", "min_vehicles", "min_hours"],
    "h_frequent": ["count", "window_hours"],
    "h_export": ["vin", "from", "to", "format"],
    "h_audit": ["actor", "action", "from", "limit", "offset"],
    "h_positions": ["limit"],
    "h_charging": ["offline_days"],
}


def openapi() -> dict:
    paths: dict = {}
    for method, pattern, handler, role in ROUTES:
        path = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern)
        params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                  for n in re.findall(r"\{(\w+)\}", path)]
        params += [{"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
                   for n in _PARAMS.get(handler, [])]
        doc = (getattr(Api, handler).__doc__ or handler[2:].replace("_", " ")).strip()
        paths.setdefault(path, {})[method.lower()] = {
            "summary": doc, "operationId": handler[2:], "parameters": params,
            "security": [{"bearer": []}], "x-required-role": role,
            "responses": {"200": {"description": "OK", "content": {"application/json": {}}},
                          "401": {"description": "no or unknown token"},
                          "403": {"description": f"needs the {role} role"}}}
    return {"openapi": "3.0.3", "info": {"title": "nev-relay node API", "version": "1"},
            "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}, "paths": paths}


def site(api: Api) -> server.Site:
    s = server.Site(api)
    s.noisy = False
    s.displayTracebacks = False
    return s


__all__ = ["Api", "site", "hash_token", "openapi", "parse_qs"]
