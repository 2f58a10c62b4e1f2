"""Charging operators push over HTTP in the T/CEC 102.4 manner (municipal, provincial).

``POST <any base path>/<interface>`` with the signed, encrypted JSON envelope of
``codec.tcec``. ``query_token`` gives a Bearer token; every other interface needs it.
Each request is authenticated (operator known, signature, token), decrypted, validated
(identifier rules, this node's region, a connector/equipment whose static info was
received), stored like any frame (the answer waits for the commit), and audited. Refusals
carry the T/CEC ``Ret`` code: 4001 signature, 4002 token, 4003 envelope, 4004 business data,
500 system error.
"""

from __future__ import annotations

import json
import secrets as pysecrets

import structlog
from twisted.internet.defer import DeferredList
from twisted.web import resource, server

from codec import ChargingMessage, CodecError, Command, Edition, Encryption, Frame, Response, tcec
from codec.frame import with_raw

from .framing import utc
from .ingest import Received

log = structlog.get_logger("relay.charging_http")


class ChargingAPI(resource.Resource):
    isLeaf = True

    def __init__(self, reactor, ingest, audit, operators: dict, facilities, *, region: str = "",
                 token_lifetime: float = 7200.0, max_body: int = 1 << 20) -> None:
        super().__init__()
        self.reactor = reactor
        self.ingest = ingest
        self.audit = audit
        #: operator id -> codec.tcec.Secrets
        self.operators = operators
        self.facilities = facilities
        self.region = region
        self.token_lifetime = token_lifetime
        self.max_body = max_body
        #: token -> (operator id, expiry)
        self.tokens: dict[str, tuple[str, float]] = {}
        self.requests = 0
        self.refused: dict[int, int] = {}
        self.messages_stored = 0

    # -- HTTP -------------------------------------------------------------------------
    def render_GET(self, request):
        request.setResponseCode(405)
        return b""

    def render_POST(self, request):
        self.requests += 1
        interface = request.postpath[-1].decode("ascii", "replace") if request.postpath else ""
        peer = getattr(request.getClientAddress(), "host", "?")
        length = request.getHeader(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            request.setResponseCode(413)
            self.audit.record(peer, "charging_http", "refused", target=interface, reason="body_too_large")
            return b""
        body = request.content.read(self.max_body + 1)
        if len(body) > self.max_body:
            request.setResponseCode(413)
            self.audit.record(peer, "charging_http", "refused", target=interface, reason="body_too_large")
            return b""
        secrets_ = None
        operator = "?"
        try:
            try:
                parsed = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                raise tcec.ExchangeError(tcec.RET_ENVELOPE, "the body is not JSON") from None
            if isinstance(parsed, dict) and isinstance(parsed.get("OperatorID"), str):
                operator = parsed["OperatorID"][:32]  # for the audit trail, even when refused below
            envelope = tcec.check_envelope(parsed)
            operator = envelope["OperatorID"]
            secrets_ = self.operators.get(operator)
            if secrets_ is None:
                raise tcec.ExchangeError(tcec.RET_TOKEN if interface != "query_token" else tcec.RET_BUSINESS,
                                         "unknown operator")
            tcec.verify_request(envelope, secrets_)
            if interface == "query_token":
                return self._token(request, envelope, secrets_, peer)
            self._check_token(request, operator)
            builder = tcec.INTERFACES.get(interface)
            if builder is None:
                raise tcec.ExchangeError(tcec.RET_BUSINESS, f"interface {interface!r} is not offered here")
            try:
                data = json.loads(tcec.decrypt_data(envelope["Data"], secrets_))
            except ValueError:
                raise tcec.ExchangeError(tcec.RET_BUSINESS, "Data is not JSON") from None
            if not isinstance(data, dict):
                raise tcec.ExchangeError(tcec.RET_BUSINESS, "Data is not a JSON object")
            try:
                messages = builder(data, tcec.parse_timestamp(envelope["TimeStamp"]))
                for msg in messages:
                    self._check_facility(operator, msg)
                # encoded now: a value the wire layout cannot carry is the sender's error
                frames = [with_raw(Frame(Edition.V2016, msg.kind, Response.COMMAND, operator, Encryption.NONE, msg))
                          for msg in messages]
            except tcec.ExchangeError:
                raise
            except (AttributeError, TypeError, ValueError, KeyError, CodecError) as exc:
                raise tcec.ExchangeError(tcec.RET_BUSINESS, f"Data does not fit {interface}: "
                                                            f"{type(exc).__name__}: {exc}") from None
        except tcec.ExchangeError as exc:
            return self._refuse(request, exc, secrets_, operator, interface, peer)
        self._store(request, operator, interface, frames, secrets_, peer)
        return server.NOT_DONE_YET

    # -- steps ------------------------------------------------------------------------
    def _token(self, request, envelope: dict, secrets_, peer: str) -> bytes:
        try:
            data = json.loads(tcec.decrypt_data(envelope["Data"], secrets_))
        except ValueError:
            raise tcec.ExchangeError(tcec.RET_BUSINESS, "Data is not JSON") from None
        operator = envelope["OperatorID"]
        ok = isinstance(data, dict) and data.get("OperatorID") == operator and \
            pysecrets.compare_digest(str(data.get("OperatorSecret", "")), secrets_.operator_secret)
        answer = {"OperatorID": operator, "SuccStat": 0 if ok else 1, "AccessToken": "", "TokenAvailableTime": 0,
                  "FailReason": 0 if ok else 2}
        if ok:
            token = pysecrets.token_urlsafe(24)
            now = self.reactor.seconds()
            self.tokens = {t: v for t, v in self.tokens.items() if v[1] > now}
            self.tokens[token] = (operator, now + self.token_lifetime)
            answer.update(AccessToken=token, TokenAvailableTime=int(self.token_lifetime))
        self.audit.record(operator, "charging_token", "accepted" if ok else "refused", peer=peer)
        return self._json(request, tcec.make_response(tcec.RET_OK, "", json.dumps(answer), secrets_))

    def _check_token(self, request, operator: str) -> None:
        auth = (request.getHeader(b"authorization") or b"").decode("latin-1")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        entry = self.tokens.get(token)
        if entry is None or entry[0] != operator:
            raise tcec.ExchangeError(tcec.RET_TOKEN, "token missing or not this operator's")
        if entry[1] <= self.reactor.seconds():
            del self.tokens[token]
            raise tcec.ExchangeError(tcec.RET_TOKEN, "token expired")

    def _check_facility(self, operator: str, msg: ChargingMessage) -> None:
        if msg.kind == Command.CHARGING_STATIC:
            if self.region and not msg.data["region_code"].startswith(self.region):
                raise tcec.ExchangeError(tcec.RET_BUSINESS, "station outside this platform's region")
            return
        if self.facilities.station_of(operator, msg) is None:
            raise tcec.ExchangeError(tcec.RET_BUSINESS, f"unknown connector or equipment {msg.subject_id!r} "
                                                        "(send its station info first)")

    def _store(self, request, operator: str, interface: str, frames: list, secrets_, peer: str) -> None:
        now = utc(self.reactor.seconds())
        messages = frames
        waits = [self.ingest.accept(Received(frame, f"http:{operator}@{peer}", now, "operator", operator))
                 for frame in frames]

        def done(results):
            if all(ok for ok, _ in results):
                self.messages_stored += len(messages)
                self.audit.record(operator, "charging_http", "accepted", target=interface, messages=len(messages))
                answer = tcec.make_response(tcec.RET_OK, "", json.dumps(tcec.ACK_KEYS.get(interface, {"Status": 0})),
                                            secrets_)
            else:
                self.audit.record(operator, "charging_http", "failed", target=interface)
                answer = tcec.make_response(tcec.RET_SYSTEM, "not stored", None, secrets_)
            if not request._disconnected:
                request.write(self._encode(request, answer))
                request.finish()

        DeferredList(waits, consumeErrors=True).addCallback(done).addErrback(
            lambda f: log.error("charging_store_failed", error=f.getErrorMessage()))

    def _refuse(self, request, exc: tcec.ExchangeError, secrets_, operator: str, interface: str, peer: str) -> bytes:
        self.refused[exc.ret] = self.refused.get(exc.ret, 0) + 1
        self.audit.record(operator, "charging_http", "refused", target=interface, ret=exc.ret, reason=exc.msg,
                          peer=peer)
        return self._json(request, tcec.make_response(exc.ret, exc.msg, None, secrets_))

    def _encode(self, request, obj: dict) -> bytes:
        request.setHeader(b"content-type", b"application/json;charset=utf-8")
        return json.dumps(obj, ensure_ascii=False).encode("utf-8")

    def _json(self, request, obj: dict) -> bytes:
        return self._encode(request, obj)


def site(api: ChargingAPI) -> server.Site:
    s = server.Site(api)
    s.noisy = False
    s.displayTracebacks = False
    return s
