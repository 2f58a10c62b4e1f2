"""The 6-byte time of GB/T 32960.3 (2016 and 2025 clause 6.4, table 5).

Year - 2000, month, day, hour, minute, second, each one byte, in GMT+8. Decoded
times are aware ``datetime`` objects with a +08:00 offset; encoding converts any
aware time to +08:00 first and refuses naive times (a naive local time anywhere
is a bug waiting for a server in another zone).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from .errors import BadTime, EncodeError

#: the zone every time of the standard is given in
CST = timezone(timedelta(hours=8), "+08:00")

SIZE = 6

#: times decoded lately, by their 6 bytes: a fleet reporting every 10 s puts thousands of
#: frames on each second, and every node decodes each frame's time more than once (framing,
#: then the data unit); a datetime is immutable, so one object serves them all
_RECENT: dict[bytes, datetime] = {}
_RECENT_MAX = 4096


def decode_time(buf: bytes | memoryview, off: int = 0) -> datetime:
    """Decode the 6 bytes at ``off``; raise :class:`BadTime` for an impossible date."""
    key = bytes(buf[off : off + 6])
    when = _RECENT.get(key)
    if when is not None:
        return when
    y, mo, d, h, mi, s = key
    if y > 99:
        raise BadTime(f"year byte {y} is outside 0-99 (2000-2099)", off)
    try:
        when = datetime(2000 + y, mo, d, h, mi, s, tzinfo=CST)
    except ValueError as exc:
        raise BadTime(
            f"impossible time {y:02d}-{mo:02d}-{d:02d} {h:02d}:{mi:02d}:{s:02d} ({exc})", off
        ) from None
    if len(_RECENT) >= _RECENT_MAX:
        _RECENT.clear()
    _RECENT[key] = when
    return when


def encode_time(when: datetime) -> bytes:
    if when.tzinfo is None:
        raise EncodeError("time must be timezone-aware (the standard's times are +08:00)")
    local = when.astimezone(CST)
    if not 2000 <= local.year <= 2099:
        raise EncodeError(f"year {local.year} outside 2000-2099")
    return bytes((local.year - 2000, local.month, local.day, local.hour, local.minute, local.second))


def parse_iso(text: str) -> datetime:
    """Parse an ISO 8601 time for JSON input; a time without offset is taken as +08:00."""
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=CST)
    return when


def format_iso(when: datetime) -> str:
    return when.astimezone(CST).isoformat()
