"""FrameReader: split a byte stream into frames, sans I/O.

Feed it bytes in any chunking; it returns, in stream order, each complete frame as a
:class:`codec.frame.Frame` and each refused stretch as a :class:`codec.errors.FrameError`
whose ``offset`` is the position in the whole stream.

Rules, in the order they are applied at a candidate start (``##`` or ``$$``):

1. the header must be plausible: response and encryption flags of the edition,
   a printable unique id, a data-unit length within ``max_length``; if not, the start
   is refused (``bad_header``/``bad_vin``/``bad_length``) and the search resumes one byte on;
2. while a frame is incomplete, if a complete, valid frame already sits after its start,
   the first one was cut short: it is refused as ``truncated`` and the reader moves on;
   so a bogus length never holds back the good frames behind it;
3. a complete frame must have the right BCC (``bad_bcc``; the search resumes one byte on,
   so a frame hidden inside the refused bytes is still found), a known command
   (``unknown_command``) and a data unit of the command's layout (``bad_body``,
   ``bad_time``); these last refusals consume the whole frame, unless a complete valid
   frame starts inside it: then the first was cut short and its check code matched by
   chance (``truncated``), and reading resumes at the inner frame.

Bytes before a start are reported once per stretch as ``garbage``. The buffer never
holds more than one maximum frame plus one read.
"""

from __future__ import annotations

from .bcc import bcc
from .crypto import Keys
from .errors import BadLength, FrameError, Garbage, Truncated
from .frame import HEADER_SIZE, MAX_DATA_LENGTH, Frame, decode_checked, decode_frame, parse_header
from .realtime import PendingRealtime

_STARTS = (b"##", b"$$")


def _find_start(buf: bytearray, pos: int) -> int:
    """The first ``##`` or ``$$`` at or after ``pos``. The second search stops at the first
    hit, so finding each frame of a long multi-frame read costs its own length, not the
    rest of the buffer."""
    a = buf.find(b"##", pos)
    if a < 0:
        return buf.find(b"$$", pos)
    b = buf.find(b"$$", pos, a + 1)
    return a if b < 0 else b


class FrameReader:
    def __init__(self, max_length: int = MAX_DATA_LENGTH, keys: Keys | None = None, packed: bool = False,
                 lazy: bool = False) -> None:
        """``packed``: realtime arrays stay packed (:class:`codec.fields.PackedValues`), for a
        node that stores and forwards frames rather than reading every cell. ``lazy``: a
        plain-text realtime or reissue frame comes with a
        :class:`codec.realtime.PendingRealtime` body (only its collection time decoded;
        :func:`codec.frame.resolve` decodes the rest), so that whoever stores it decodes it
        (and a copy it recognises as a duplicate need not be decoded at all). The rules above hold
        all the same: a frame with a pending body that holds a complete valid frame is
        decoded at once, so that a cut-short frame is still told from a good one."""
        if not 0 <= max_length <= MAX_DATA_LENGTH:
            raise ValueError(f"max_length must be within 0-{MAX_DATA_LENGTH}")
        self.max_length = max_length
        self.keys = keys
        self.packed = packed
        self.lazy = lazy
        self._buf = bytearray()
        #: stream offset of ``_buf[0]``
        self._base = 0

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        self._buf += data
        out: list[Frame | FrameError] = []
        buf = self._buf
        pos = 0
        while True:
            start = _find_start(buf, pos)
            if start < 0:
                # keep a trailing '#'/'$' that may begin a start
                keep = 1 if len(buf) > pos and buf[-1] in (0x23, 0x24) else 0
                end = len(buf) - keep
                if end > pos:
                    out.append(Garbage(f"{end - pos} bytes without a frame start", self._base + pos, buf[pos:end]))
                pos = end
                break
            if start > pos:
                out.append(Garbage(f"{start - pos} bytes before a frame start", self._base + pos, buf[pos:start]))
                pos = start
            if len(buf) - pos < HEADER_SIZE:
                break
            try:
                header = parse_header(buf, pos)
                length = header[5]
                if length > self.max_length:
                    raise BadLength(f"data-unit length {length} exceeds this listener's bound {self.max_length}", 22)
            except FrameError as exc:
                exc.offset = self._base + pos
                exc.raw = bytes(buf[pos:pos + 2])
                out.append(exc)
                pos += 1
                continue
            end = pos + HEADER_SIZE + length + 1
            if end > len(buf):
                cut = self._complete_frame_after(buf, pos)
                if cut < 0:
                    break
                pos = self._cut_short(out, buf, pos, cut)
                continue
            if bcc(memoryview(buf)[pos + 2:end - 1]) != buf[end - 1]:
                nxt = self._complete_frame_after(buf, pos, limit=end)
                if nxt >= 0:
                    pos = self._cut_short(out, buf, pos, nxt)
                    continue
                try:
                    decode_frame(buf[pos:end], self.keys)  # raises the precise BCC error
                except FrameError as exc:
                    exc.offset += self._base + pos
                    out.append(exc)
                pos += 1
                continue
            try:
                data = bytes(buf[pos:end])
                frame = decode_checked(data, *header[:5], keys=self.keys, packed=self.packed, lazy=self.lazy)
                if type(frame.body) is PendingRealtime and self._complete_frame_after(buf, pos, limit=end) >= 0:
                    # rule 3 needs the whole data unit: is this frame good, or cut short?
                    frame = decode_checked(data, *header[:5], keys=self.keys, packed=self.packed)
                out.append(frame)
            except FrameError as exc:
                # a cut-short frame whose declared end happens to hold a matching check code
                # (1 in 256): if a whole valid frame starts inside it, that one is real
                nxt = self._complete_frame_after(buf, pos, limit=end)
                if nxt >= 0:
                    pos = self._cut_short(out, buf, pos, nxt)
                    continue
                exc.offset += self._base + pos
                out.append(exc)
            pos = end
        if pos:
            del buf[:pos]
            self._base += pos
        return out

    def _cut_short(self, out: list, buf: bytearray, pos: int, nxt: int) -> int:
        """Report the frame at ``pos`` as cut short by the valid frame at ``nxt``; resume there."""
        out.append(Truncated(f"frame cut short: the next frame starts after {nxt - pos} bytes", self._base + pos,
                             buf[pos:nxt]))
        return nxt

    def _complete_frame_after(self, buf: bytearray, pos: int, limit: int | None = None) -> int:
        """The start of the first complete frame with a valid header and BCC after ``pos``
        (and before ``limit``), or -1."""
        p = _find_start(buf, pos + 1)
        while p >= 0 and (limit is None or p < limit):
            if len(buf) - p >= HEADER_SIZE + 1:
                try:
                    _, _, _, _, _, length = parse_header(buf, p)
                except FrameError:
                    length = -1
                end = p + HEADER_SIZE + length + 1
                if 0 <= length <= self.max_length and end <= len(buf) and \
                        bcc(memoryview(buf)[p + 2:end - 1]) == buf[end - 1]:
                    return p
            p = _find_start(buf, p + 1)
        return -1

    def close(self) -> list[FrameError]:
        """End of stream: whatever is buffered is a truncated frame (or garbage)."""
        if not self._buf:
            return []
        data = bytes(self._buf)
        err = (Truncated if data[:2] in _STARTS else Garbage)(
            f"{len(data)} bytes left at end of stream", self._base, data)
        self._base += len(data)
        self._buf.clear()
        return [err]
