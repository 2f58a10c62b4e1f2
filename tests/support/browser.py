"""Headless Chromium for the dashboard test, without extra Python dependencies.

* :func:`find_chromium` finds Debian's ``chromium`` (or ``$RELAY_CHROMIUM``) and fails the
  test with how to install it when it is absent;
* :func:`dump_dom` and :func:`screenshot` run one headless browser each (a fresh profile
  every time, a process group killed on timeout) after the page's scripts ran
  (``--virtual-time-budget``);
* :func:`evaluate` runs a script in a page over the DevTools pipe (to click a button);
* :func:`elements` parses a dumped DOM into ``{id: Element(tag, attrs, text)}``;
* :func:`read_png` decodes a PNG (8-bit RGB/RGBA/grey, not interlaced) with ``zlib`` only,
  and :class:`Picture` answers "is it blank?" and "is this colour in that box?".

The functions here block; an async test calls them with ``deferToThread`` so that the
reactor (and the node under test) keeps running.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from html.parser import HTMLParser
from itertools import accumulate
from pathlib import Path

import pytest

INSTALL_HINT = ("headless Chromium is needed for the dashboard test and was not found. Install Debian's package "
                "with `sudo apt-get install -y chromium` (it provides /usr/bin/chromium), or set RELAY_CHROMIUM "
                "to a Chromium binary.")

#: the flags of every run (no network beyond the page, no first-run work, a private profile)
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--force-device-scale-factor=1", "--lang=en-US",
         "--mute-audio")

#: default viewport of the dashboard runs (CSS px = screenshot px at scale factor 1)
WINDOW = (1400, 1300)


def find_chromium() -> str:
    """The Chromium binary; fails the calling test (not a skip) when there is none."""
    explicit = os.environ.get("RELAY_CHROMIUM")
    if explicit:
        if shutil.which(explicit) is None:
            pytest.fail(f"RELAY_CHROMIUM={explicit!r} is not an executable. {INSTALL_HINT}", pytrace=False)
        return shutil.which(explicit)
    found = shutil.which("chromium")
    if found is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    return found


class BrowserError(AssertionError):
    pass


def run_chromium(binary: str, args: list[str], *, timeout: float = 30.0) -> tuple[bytes, str]:
    """Run one headless Chromium to completion in a fresh profile; returns (stdout, stderr).

    The browser runs in its own process group, killed whole if it outlives ``timeout``."""
    with tempfile.TemporaryDirectory(prefix="relay-chromium-") as profile:
        argv = [binary, *FLAGS, f"--user-data-dir={profile}", "--crash-dumps-dir=" + profile, *args]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                start_new_session=True, env={**os.environ, "LANG": "en_US.UTF-8"})
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise BrowserError(f"chromium did not finish in {timeout}s: {' '.join(args)}\n"
                               f"{err.decode('utf-8', 'replace')[-3000:]}") from None
        finally:
            try:  # helpers (zygote, utility processes) that outlived the browser
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    text = err.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise BrowserError(f"chromium exited with {proc.returncode}: {' '.join(args)}\n{text[-3000:]}")
    return out, text


def _page_args(window: tuple[int, int], budget_ms: int) -> list[str]:
    return [f"--window-size={window[0]},{window[1]}", f"--virtual-time-budget={budget_ms}"]


def dump_dom(binary: str, url: str, *, window: tuple[int, int] = WINDOW, budget_ms: int = 5000,
             timeout: float = 30.0) -> str:
    """The serialized DOM of ``url`` after its scripts ran for ``budget_ms`` of virtual time."""
    out, err = run_chromium(binary, [*_page_args(window, budget_ms), "--dump-dom", url], timeout=timeout)
    dom = out.decode("utf-8", "replace")
    if "<html" not in dom:
        raise BrowserError(f"no DOM from chromium for {url}:\n{err[-3000:]}")
    return dom


def screenshot(binary: str, url: str, path: Path, *, window: tuple[int, int] = WINDOW, budget_ms: int = 5000,
               timeout: float = 30.0) -> Path:
    """A PNG of the viewport of ``url`` after its scripts ran; returns ``path``."""
    path = Path(path)
    if path.exists():
        path.unlink()
    _, err = run_chromium(binary, [*_page_args(window, budget_ms), f"--screenshot={path}", url], timeout=timeout)
    if not path.exists() or path.stat().st_size == 0:
        raise BrowserError(f"chromium wrote no screenshot for {url}:\n{err[-3000:]}")
    return path


# --- a page driven over the DevTools protocol ------------------------------------------------

def _read_messages(fd: int, buffer: bytearray, deadline: float):
    """DevTools messages from the pipe (JSON, each ended by a NUL byte) until ``deadline``."""
    while True:
        end = buffer.find(b"\0")
        if end >= 0:
            raw = bytes(buffer[:end])
            del buffer[:end + 1]
            yield json.loads(raw)
            continue
        left = deadline - time.monotonic()
        if left <= 0:
            raise BrowserError("no answer from chromium over the DevTools pipe in time")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise BrowserError("chromium closed the DevTools pipe")
            buffer.extend(chunk)


#: run in a small Python child: put the DevTools pipe on fds 3 and 4, then become the browser
_EXEC_WITH_PIPE = ("import os, sys\n"
                   "r, w = int(sys.argv[1]), int(sys.argv[2])\n"
                   "os.dup2(r, 3)\nos.dup2(w, 4)\nos.close(r)\nos.close(w)\n"
                   "os.execv(sys.argv[3], sys.argv[3:])\n")


def evaluate(binary: str, url: str, expression: str, *, window: tuple[int, int] = WINDOW,
             timeout: float = 30.0):
    """Open ``url`` in headless Chromium, run ``expression`` in it (a promise is awaited, in real
    time) and return its JSON value. Driven over ``--remote-debugging-pipe`` (the browser
    reads fd 3, writes fd 4), so no port and no websocket client are needed."""
    deadline = time.monotonic() + timeout
    to_browser_r, to_browser_w = os.pipe()
    from_browser_r, from_browser_w = os.pipe()
    # the child's ends go to descriptors >= 10 so that moving them to 3 and 4 cannot clash
    child_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
    child_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
    for fd in (to_browser_r, from_browser_w):
        os.close(fd)
    with tempfile.TemporaryDirectory(prefix="relay-chromium-") as profile:
        argv = [binary, *FLAGS, f"--user-data-dir={profile}", f"--crash-dumps-dir={profile}",
                f"--window-size={window[0]},{window[1]}", "--remote-debugging-pipe", "about:blank"]
        proc = subprocess.Popen([sys.executable, "-c", _EXEC_WITH_PIPE, str(child_r), str(child_w), *argv],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True, pass_fds=(child_r, child_w))
        os.close(child_r)
        os.close(child_w)
        buffer = bytearray()
        ids = iter(range(1, 1 << 30))
        events: list[str] = []

        def call(method: str, session: str | None = None, **params):
            n = next(ids)
            message = {"id": n, "method": method, "params": params}
            if session:
                message["sessionId"] = session
            os.write(to_browser_w, json.dumps(message).encode() + b"\0")
            for answer in _read_messages(from_browser_r, buffer, deadline):
                if "method" in answer:
                    events.append(answer["method"])
                elif answer.get("id") == n:
                    if "error" in answer:
                        raise BrowserError(f"{method}: {answer['error']}")
                    return answer["result"]

        def wait_event(name: str) -> None:
            if name in events:
                return
            for message in _read_messages(from_browser_r, buffer, deadline):
                if message.get("method") == name:
                    return

        try:
            target = call("Target.createTarget", url="about:blank")["targetId"]
            session = call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            call("Page.enable", session)
            events.clear()
            call("Page.navigate", session, url=url)
            wait_event("Page.loadEventFired")
            result = call("Runtime.evaluate", session, expression=expression, awaitPromise=True,
                          returnByValue=True, timeout=max(1000, int((deadline - time.monotonic()) * 1000) - 500))
            if "exceptionDetails" in result:
                raise BrowserError(f"the page's script failed: {result['exceptionDetails']}")
            value = result["result"].get("value")
            try:
                call("Browser.close")
            except BrowserError:
                pass
            return value
        finally:
            os.close(to_browser_w)
            os.close(from_browser_r)
            try:
                proc.wait(timeout=max(1.0, min(5.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            proc.stderr.close()


# --- the DOM ---------------------------------------------------------------------------------

@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """Text content with runs of white space made single spaces."""
        return " ".join("".join(self.parts).split())


_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track",
         "wbr"}


class _ById(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: dict[str, Element] = {}
        self.stack: list[tuple[str, Element | None]] = []

    def handle_starttag(self, tag, attrs) -> None:
        values = {k: (v if v is not None else "") for k, v in attrs}
        el = Element(tag, values) if "id" in values else None
        if el is not None:
            self.found.setdefault(values["id"], el)
        if tag not in _VOID:
            self.stack.append((tag, el))

    def handle_startendtag(self, tag, attrs) -> None:
        values = {k: (v if v is not None else "") for k, v in attrs}
        if "id" in values:
            self.found.setdefault(values["id"], Element(tag, values))

    def handle_endtag(self, tag) -> None:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                return

    def handle_data(self, data) -> None:
        for _, el in self.stack:
            if el is not None:
                el.parts.append(data)


def elements(dom: str) -> dict[str, Element]:
    """Every element with an id in ``dom``, with its attributes and text content."""
    parser = _ById()
    parser.feed(dom)
    parser.close()
    return parser.found


# --- PNG ----------------------------------------------------------------------------------------

def _swar_add(a: bytes, b: bytes) -> bytes:
    """Bytewise (a + b) mod 256 of two equal-length strings, on big integers."""
    n = len(a)
    if n == 0:
        return b""
    lo = int.from_bytes(b"\x7f" * n, "big")
    hi = int.from_bytes(b"\x80" * n, "big")
    x, y = int.from_bytes(a, "big"), int.from_bytes(b, "big")
    return (((x & lo) + (y & lo)) ^ ((x ^ y) & hi)).to_bytes(n, "big")


def _unfilter(kind: int, raw: bytes, prev: bytes, bpp: int) -> bytes:
    if kind == 0:
        return raw
    if kind == 1:  # Sub: a running sum per channel
        out = bytearray(raw)
        for c in range(bpp):
            out[c::bpp] = bytes(accumulate(raw[c::bpp], lambda s, v: (s + v) & 0xFF))
        return bytes(out)
    if kind == 2:  # Up
        return _swar_add(raw, prev)
    out = bytearray(len(raw))
    if kind == 3:  # Average
        for i, v in enumerate(raw):
            left = out[i - bpp] if i >= bpp else 0
            out[i] = (v + ((left + prev[i]) >> 1)) & 0xFF
        return bytes(out)
    if kind == 4:  # Paeth
        for i, v in enumerate(raw):
            if i >= bpp:
                a, c = out[i - bpp], prev[i - bpp]
            else:
                a = c = 0
            b = prev[i]
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            out[i] = (v + pred) & 0xFF
        return bytes(out)
    raise ValueError(f"PNG: unknown filter type {kind}")


@dataclass
class Picture:
    width: int
    height: int
    channels: int
    rows: list[bytes]

    def pixel(self, x: int, y: int) -> tuple[int, ...]:
        row, c = self.rows[y], self.channels
        px = tuple(row[x * c:(x + 1) * c])
        return px if c >= 3 else px * 3

    def colours(self, box: tuple[int, int, int, int] | None = None, step: int = 1) -> set[tuple[int, ...]]:
        """Distinct RGB values in ``box`` (x, y, width, height), every ``step``-th pixel."""
        x0, y0, w, h = box or (0, 0, self.width, self.height)
        x0, y0 = max(0, x0), max(0, y0)
        x1, y1 = min(self.width, x0 + w), min(self.height, y0 + h)
        c = self.channels
        seen: set[tuple[int, ...]] = set()
        for y in range(y0, y1, step):
            row = self.rows[y]
            if c >= 3:
                seen.update(zip(row[x0 * c:x1 * c:c * step], row[x0 * c + 1:x1 * c:c * step],
                                row[x0 * c + 2:x1 * c:c * step]))
            else:
                seen.update((v, v, v) for v in row[x0 * c:x1 * c:c * step])
        return seen

    def has_colour(self, rgb: tuple[int, int, int], box=None, tolerance: int = 12) -> bool:
        return any(all(abs(a - b) <= tolerance for a, b in zip(px, rgb)) for px in self.colours(box))


def read_png(path: Path) -> Picture:
    """Decode an 8-bit, non-interlaced PNG (grey, RGB, grey+alpha or RGBA) with zlib only."""
    data = Path(path).read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG")
    pos, idat, header = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        chunk = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat.append(chunk)
        elif kind == b"IEND":
            break
    if header is None:
        raise ValueError(f"{path}: no IHDR")
    width, height, depth, colour, _, _, interlace = header
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(colour)
    if depth != 8 or channels is None or interlace:
        raise ValueError(f"{path}: unsupported PNG (depth {depth}, colour type {colour}, interlace {interlace})")
    raw = zlib.decompress(b"".join(idat))
    stride = width * channels
    if len(raw) != height * (stride + 1):
        raise ValueError(f"{path}: {len(raw)} bytes of image data for {width}x{height}x{channels}")
    rows, prev = [], bytes(stride)
    for y in range(height):
        start = y * (stride + 1)
        prev = _unfilter(raw[start], raw[start + 1:start + 1 + stride], prev, channels)
        rows.append(prev)
    return Picture(width, height, channels, rows)


__all__ = ["find_chromium", "run_chromium", "dump_dom", "screenshot", "evaluate", "elements", "Element", "read_png",
           "Picture", "BrowserError", "FLAGS", "WINDOW", "INSTALL_HINT"]
