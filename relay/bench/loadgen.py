"""The load generator of ``relay bench ingest|e2e``: simulated vehicle terminals in a
process of their own, so the node under test keeps its core to itself.

    python -m relay.bench.loadgen --port P --terminals N --rate R --seconds S [--sent-log FILE]

It opens N TCP connections (a bounded number of connects/logins in flight, so the
listener's accept queue is never flooded), logs each terminal in (0x01) and waits for the
success answer, then sends realtime frames (0x02) at an aggregate ``rate`` for ``seconds``,
round-robin over the terminals (each terminal sends every N/R seconds, evenly spread),
logs every terminal out (0x04) and waits for the answers, and exits.

Frames are realistic and varied: a few dozen readings made with
:func:`relay.simulate.realtime_items` (whole vehicle, two motors, position, extremes,
alarm, 96 cell voltages, 32 probe temperatures) are encoded once with the codec; each
sent frame is one of them with the terminal's VIN, its own collection time and the check
code put in (a few byte operations instead of a full encode, so one process can offer
tens of thousands of frames per second). A terminal's collection times strictly increase
(one second apart at least), so (VIN, collection time) identifies every frame — the
receiving store deduplicates on it, and lag measurements key on it. When a terminal sends
faster than once a second its clock runs ahead of the wall clock accordingly.

Sockets are non-blocking. A frame the kernel does not take at once stays in that
terminal's buffer; while it is there the terminal skips its turns (counted as
``frames_skipped``), so when the node applies back-pressure the offered rate drops
instead of the generator's memory growing. ``frames_sent`` counts frames handed to the
kernel in full.

Standard output: one JSON object per line: ``{"event": "logged_in", ...}`` when every
terminal has logged in (sending starts right after), ``{"event": "sent", ...}`` when the
last frame is in the kernel, and the final ``{"event": "done", ...}`` with all counts.
With ``--sent-log FILE`` every frame's ``vin,collected_at_epoch,sent_at_epoch`` is written
there (CSV, wall-clock seconds) for lag measurements.
"""

from __future__ import annotations

import argparse
import errno
import json
import resource
import selectors
import socket
import sys
import time
from datetime import datetime, timezone

STATE_CONNECTING = 0
STATE_LOGIN = 1
STATE_ONLINE = 2
STATE_LOGOUT = 3
STATE_DONE = 4
STATE_DEAD = 5


def raise_nofile_limit() -> int:
    """Raise the soft open-file limit to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def _xor(data: bytes) -> int:
    value = 0
    for b in data:
        value ^= b
    return value


class Template:
    """One encoded realtime frame, split where the per-frame parts go."""

    __slots__ = ("head", "length", "rest", "xor")

    def __init__(self, raw: bytes) -> None:
        # raw = start(2) cmd resp vin(17) enc len(2) | time(6) rest | bcc
        self.head = raw[2:4]                      # command, response
        self.length = raw[22:24]                  # data-unit length, big-endian
        self.rest = raw[30:-1]                    # data unit after the collection time
        self.xor = _xor(self.length) ^ _xor(self.rest)


def build_templates(edition_value: str = "2016", count: int = 48, seed: int = 4242) -> list[Template]:
    """``count`` realistic realtime frames of one edition, encoded by the codec."""
    import codec
    from codec import Edition
    from codec.frame import realtime_frame
    from codec.realtime import RealtimeData

    from ..simulate import make_fleet, realtime_items

    edition = Edition(edition_value)
    when = datetime(2026, 1, 1, 8, 0, 0, tzinfo=codec.CST)
    out = []
    for v in make_fleet(count, public_share=1.0, seed=seed, vin_prefix="LBENCHT"):
        raw = codec.encode_frame(realtime_frame(edition, v.vin, RealtimeData(when, realtime_items(v, edition))))
        out.append(Template(raw))
    return out


class FrameMaker:
    """Builds a realtime frame for a VIN and a collection second from a template."""

    def __init__(self, edition_value: str = "2016", templates: list[Template] | None = None) -> None:
        self.start = b"##" if edition_value == "2016" else b"$$"
        self.templates = templates or build_templates(edition_value)
        self._times: dict[int, tuple[bytes, int]] = {}

    def vin_part(self, vin: str) -> tuple[bytes, int]:
        """The VIN and encryption bytes of the header, and their XOR."""
        part = vin.encode("ascii").ljust(17, b"\x00") + b"\x01"
        return part, _xor(part)

    def time_part(self, epoch_second: int) -> tuple[bytes, int]:
        t = self._times.get(epoch_second)
        if t is None:
            tm = time.gmtime(epoch_second + 8 * 3600)  # the standard's times are GMT+8
            raw = bytes((tm.tm_year - 2000, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec))
            t = self._times[epoch_second] = (raw, _xor(raw))
            if len(self._times) > 4096:
                self._times.clear()
                self._times[epoch_second] = t
        return t

    def frame(self, vin_part: tuple[bytes, int], epoch_second: int, variant: int) -> bytes:
        tpl = self.templates[variant % len(self.templates)]
        tbytes, txor = self.time_part(epoch_second)
        check = tpl.head[0] ^ tpl.head[1] ^ vin_part[1] ^ tpl.xor ^ txor
        return b"".join((self.start, tpl.head, vin_part[0], tpl.length, tbytes, tpl.rest, bytes((check,))))


class Terminal:
    __slots__ = ("index", "vin", "vin_part", "sock", "fd", "state", "out", "reader", "last_second", "events")

    def __init__(self, index: int, vin: str, vin_part: tuple[bytes, int]) -> None:
        self.index = index
        self.vin = vin
        self.vin_part = vin_part
        self.sock: socket.socket | None = None
        self.fd = -1
        self.state = STATE_CONNECTING
        self.out: bytes = b""
        self.reader = None
        self.last_second = 0
        self.events = 0


class LoadGenerator:
    def __init__(self, host: str, port: int, vins: list[str], *, rate: float, seconds: float,
                 edition: str = "2016", connect_concurrency: int = 200, login_timeout: float = 120.0,
                 logout_timeout: float = 120.0, sent_log: str | None = None, out=sys.stdout) -> None:
        self.host = host
        self.port = port
        self.rate = rate
        self.seconds = seconds
        self.edition = edition
        self.connect_concurrency = connect_concurrency
        self.login_timeout = login_timeout
        self.logout_timeout = logout_timeout
        self.sent_log = sent_log
        self.out = out
        self.maker = FrameMaker(edition)
        self.terminals = [Terminal(i, vin, self.maker.vin_part(vin)) for i, vin in enumerate(vins)]
        self.by_fd: dict[int, Terminal] = {}
        self.sel = selectors.DefaultSelector()
        self.counts = {"terminals": len(vins), "logged_in": 0, "login_failures": 0, "frames_sent": 0,
                       "frames_skipped": 0, "bytes_sent": 0, "connections_lost": 0, "logouts_sent": 0,
                       "logouts_answered": 0}
        self.stamps: list[tuple[int, int, float]] = []
        #: terminals connecting or waiting for their login answer
        self.in_progress: set[Terminal] = set()

    # -- output ---------------------------------------------------------------------
    def emit(self, event: str, **fields) -> None:
        self.out.write(json.dumps({"event": event, **fields}) + "\n")
        self.out.flush()

    # -- frames of the session (login/logout) through the codec ----------------------
    def _session_frame(self, term: Terminal, command: int) -> bytes:
        import codec
        from codec import Command, Edition, Encryption, Frame, Response

        edition = Edition(self.edition)
        now = datetime.now(timezone.utc).astimezone(codec.CST).replace(microsecond=0)
        if command == Command.VEHICLE_LOGIN:
            if edition is Edition.V2025:
                from codec.bodies_2025 import VehicleLogin2025

                body = VehicleLogin2025(now, 1, "89860000000000000001", ("SIMPACK" + "0" * 17,), 24, (1,))
            else:
                body = codec.VehicleLogin(now, 1, "89860000000000000001", ("SIMPACK0001",), 11)
        else:
            body = codec.Logout(now, 1)
        return codec.encode_frame(Frame(edition, command, Response.COMMAND, term.vin, Encryption.NONE, body))

    def _drop(self, term: Terminal, counter: str | None = None) -> None:
        self.in_progress.discard(term)
        if term.sock is not None:
            try:
                self.sel.unregister(term.sock)
            except (KeyError, ValueError):
                pass
            self.by_fd.pop(term.fd, None)
            term.sock.close()
            term.sock = None
        if counter:
            self.counts[counter] += 1
        term.state = STATE_DEAD
        term.out = b""

    def _want(self, term: Terminal, events: int) -> None:
        if term.events != events:
            self.sel.modify(term.sock, events)
            term.events = events

    def _write(self, term: Terminal, data: bytes) -> bool:
        """Write (or queue) bytes; False when the connection is gone."""
        if term.out:
            term.out += data
            return True
        try:
            n = term.sock.send(data)
        except BlockingIOError:
            n = 0
        except OSError:
            self._drop(term, "connections_lost")
            return False
        if n < len(data):
            term.out = data[n:]
            self._want(term, selectors.EVENT_READ | selectors.EVENT_WRITE)
        return True

    def _flush(self, term: Terminal) -> None:
        try:
            n = term.sock.send(term.out)
        except BlockingIOError:
            return
        except OSError:
            self._drop(term, "connections_lost")
            return
        term.out = term.out[n:]
        if not term.out:
            self._want(term, selectors.EVENT_READ)

    def _answers(self, term: Terminal, data: bytes, command: int) -> bool:
        """Feed session answers; True when the success answer to ``command`` arrived."""
        from codec import Frame, FrameReader, Response

        if term.reader is None:
            term.reader = FrameReader()
        ok = False
        for item in term.reader.feed(data):
            if isinstance(item, Frame) and item.command == command and item.is_answer:
                if item.response == Response.SUCCESS:
                    ok = True
                elif command == 0x01:
                    self.counts.setdefault("login_refusals", {})
                    key = f"0x{item.response:02X}"
                    self.counts["login_refusals"][key] = self.counts["login_refusals"].get(key, 0) + 1
                    self._drop(term, "login_failures")
                    return False
        return ok

    def _on_event(self, term: Terminal, mask: int) -> None:
        if term.state == STATE_CONNECTING:
            err = term.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._drop(term, "login_failures")
                return
            term.state = STATE_LOGIN
            self._want(term, selectors.EVENT_READ)
            self._write(term, self._session_frame(term, 0x01))
            return
        if mask & selectors.EVENT_WRITE and term.out:
            self._flush(term)
            if term.sock is None:
                return
        if mask & selectors.EVENT_READ:
            try:
                data = term.sock.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                if term.state in (STATE_LOGIN,):
                    self._drop(term, "login_failures")
                elif term.state == STATE_DONE:
                    self._drop(term)
                    term.state = STATE_DONE
                else:
                    self._drop(term, "connections_lost")
                return
            if term.state == STATE_LOGIN:
                if self._answers(term, data, 0x01):
                    term.state = STATE_ONLINE
                    term.reader = None
                    self.in_progress.discard(term)
                    self.counts["logged_in"] += 1
            elif term.state == STATE_LOGOUT:
                if self._answers(term, data, 0x04):
                    term.state = STATE_DONE
                    self.counts["logouts_answered"] += 1
            # STATE_ONLINE: the node sends nothing we need (answers to data, if enabled, are dropped)

    def _poll(self, timeout: float) -> None:
        for key, mask in self.sel.select(timeout):
            term = self.by_fd.get(key.fd)
            if term is not None:
                self._on_event(term, mask)

    # -- phases -------------------------------------------------------------------------
    def connect_all(self) -> None:
        deadline = time.monotonic() + self.login_timeout
        pending = iter(self.terminals)
        exhausted = False
        while time.monotonic() < deadline:
            while not exhausted and len(self.in_progress) < self.connect_concurrency:
                term = next(pending, None)
                if term is None:
                    exhausted = True
                    break
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                rc = sock.connect_ex((self.host, self.port))
                if rc not in (0, errno.EINPROGRESS):
                    sock.close()
                    term.state = STATE_DEAD
                    self.counts["login_failures"] += 1
                    continue
                term.sock, term.fd = sock, sock.fileno()
                self.by_fd[term.fd] = term
                term.events = selectors.EVENT_WRITE
                self.sel.register(sock, selectors.EVENT_WRITE)
                self.in_progress.add(term)
            if exhausted and not self.in_progress:
                break
            self._poll(0.05)
        for term in self.terminals:
            if term.state in (STATE_CONNECTING, STATE_LOGIN):
                self._drop(term, "login_failures")

    def send_all(self) -> None:
        online = [t for t in self.terminals if t.state == STATE_ONLINE]
        n = len(online)
        if not n or self.rate <= 0 or self.seconds <= 0:
            self.started = self.ended = time.time()
            return
        maker = self.maker
        stamps = self.stamps if self.sent_log else None
        tick = 0.002
        counts = self.counts
        sent = skipped = nbytes = 0
        k = 0
        t0 = time.perf_counter()
        self.started = time.time()
        t_end = t0 + self.seconds
        total = int(self.rate * self.seconds)
        wall = time.time
        while True:
            now = time.perf_counter()
            due = min(total, int(self.rate * (now - t0)))
            while k < due:
                term = online[k % n]
                k += 1
                if term.out or term.sock is None:
                    skipped += 1
                    continue
                second = int(wall())
                if second <= term.last_second:
                    second = term.last_second + 1
                term.last_second = second
                data = maker.frame(term.vin_part, second, k // n + term.index)
                if self._write(term, data):
                    if stamps is not None:
                        stamps.append((term.index, second, wall()))
                    sent += 1
                    nbytes += len(data)
                else:
                    skipped += 1
            if k >= total or now >= t_end + 5.0:
                break
            self._poll(max(0.0, min(tick, t0 + (k + 1) / self.rate - time.perf_counter())))
        # what is still queued in user space goes out before "sent"
        flush_deadline = time.monotonic() + 120.0
        while any(t.out for t in online) and time.monotonic() < flush_deadline:
            self._poll(0.01)
        for t in online:
            if t.out:  # the rest of one frame could not be written in time: not sent
                t.out = b""
                sent -= 1
        counts["frames_sent"] = sent
        counts["frames_skipped"] = skipped + (total - k)
        counts["bytes_sent"] = nbytes
        self.ended = time.time()

    def logout_all(self) -> None:
        deadline = time.monotonic() + self.logout_timeout
        for term in self.terminals:
            if term.state == STATE_ONLINE and term.sock is not None:
                term.state = STATE_LOGOUT
                term.reader = None
                if self._write(term, self._session_frame(term, 0x04)):
                    self.counts["logouts_sent"] += 1
        while time.monotonic() < deadline:
            if not any(t.state == STATE_LOGOUT for t in self.terminals):
                break
            self._poll(0.05)

    def close(self) -> None:
        for term in self.terminals:
            if term.sock is not None:
                try:
                    self.sel.unregister(term.sock)
                except (KeyError, ValueError):
                    pass
                term.sock.close()
                term.sock = None
        self.sel.close()

    def write_sent_log(self) -> None:
        if not self.sent_log:
            return
        vins = [t.vin for t in self.terminals]
        with open(self.sent_log, "w", encoding="ascii") as fh:
            fh.write("vin,collected_at_epoch,sent_at_epoch\n")
            fh.writelines(f"{vins[i]},{sec},{at:.6f}\n" for i, sec, at in self.stamps)

    def run(self) -> dict:
        t = time.time()
        self.connect_all()
        self.emit("logged_in", logged_in=self.counts["logged_in"], login_failures=self.counts["login_failures"],
                  login_seconds=round(time.time() - t, 3))
        cpu0 = time.process_time()
        self.send_all()
        cpu_send = time.process_time() - cpu0
        send_seconds = max(1e-9, self.ended - self.started)
        self.emit("sent", frames_sent=self.counts["frames_sent"], send_started=self.started, send_ended=self.ended,
                  send_seconds=round(send_seconds, 3))
        self.logout_all()
        self.close()
        self.write_sent_log()
        return {**self.counts, "target_rate_per_s": self.rate, "send_started": self.started,
                "send_ended": self.ended, "send_seconds": round(send_seconds, 3),
                "offered_frames_per_s": round(self.counts["frames_sent"] / send_seconds, 1),
                "cpu_send_s": round(cpu_send, 3), "frame_bytes": len(self.maker.frame(self.terminals[0].vin_part, int(time.time()), 0))
                if self.terminals else 0}


def fleet_vins(count: int, seed: int, public_share: float) -> list[str]:
    from ..simulate import make_fleet

    return [v.vin for v in make_fleet(count, public_share=public_share, seed=seed)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m relay.bench.loadgen", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--terminals", type=int, default=5000)
    p.add_argument("--rate", type=float, default=10000.0, help="aggregate frames per second")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--protocol", choices=("2016", "2025"), default="2016")
    p.add_argument("--seed", type=int, default=1, help="fleet seed (relay.simulate.make_fleet)")
    p.add_argument("--public-share", type=float, default=0.6)
    p.add_argument("--connect-concurrency", type=int, default=200)
    p.add_argument("--login-timeout", type=float, default=120.0)
    p.add_argument("--logout-timeout", type=float, default=120.0)
    p.add_argument("--sent-log", help="write vin,collected_at_epoch,sent_at_epoch of every frame here")
    args = p.parse_args(argv)
    limit = raise_nofile_limit()
    if args.terminals + 64 > limit:
        print(f"loadgen: open-file limit {limit} is too low for {args.terminals} terminals", file=sys.stderr)
        return 2
    gen = LoadGenerator(args.host, args.port, fleet_vins(args.terminals, args.seed, args.public_share),
                        rate=args.rate, seconds=args.seconds, edition=args.protocol,
                        connect_concurrency=args.connect_concurrency, login_timeout=args.login_timeout,
                        logout_timeout=args.logout_timeout, sent_log=args.sent_log)
    result = gen.run()
    gen.emit("done", **result)
    return 0 if result["logged_in"] else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
