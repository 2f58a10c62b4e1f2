"""Typed codec errors.

Every stretch of bytes the codec refuses is reported as a :class:`FrameError`
carrying the byte offset in the stream (or frame) where it starts, a stable
snake_case ``reason`` and a human ``detail``. :class:`FrameReader` yields these
errors instead of raising them, so that a good frame after bad bytes is never lost.
"""

from __future__ import annotations


class CodecError(Exception):
    """Base of every error the codec raises."""


class EncodeError(CodecError, ValueError):
    """A value cannot be encoded (out of range, wrong type, missing field)."""


class FrameError(CodecError):
    """A refused stretch of input. ``reason`` is one of the class-level names."""

    reason = "bad_frame"

    def __init__(self, detail: str, offset: int = 0, raw: bytes = b"") -> None:
        super().__init__(detail)
        self.detail = detail
        self.offset = offset
        #: the refused bytes (a whole frame when framing succeeded, else the skipped stretch)
        self.raw = bytes(raw)

    def at(self, offset: int) -> "FrameError":
        """The same error with its offset moved by ``offset`` (stream position)."""
        self.offset += offset
        return self

    def __str__(self) -> str:
        return f"{self.reason} at offset {self.offset}: {self.detail}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reason={self.reason!r}, offset={self.offset}, detail={self.detail!r})"


class Garbage(FrameError):
    """Bytes that do not start a frame, skipped up to the next start."""

    reason = "garbage"


class BadChecksum(FrameError):
    reason = "bad_bcc"


class Truncated(FrameError):
    reason = "truncated"


class BadLength(FrameError):
    reason = "bad_length"


class UnknownCommand(FrameError):
    reason = "unknown_command"


class BadHeader(FrameError):
    """Response or encryption flag outside the edition's table."""

    reason = "bad_header"


class BadVin(FrameError):
    reason = "bad_vin"


class BadTime(FrameError):
    reason = "bad_time"


class BadBody(FrameError):
    """The data unit does not follow the command's layout."""

    reason = "bad_body"


class Undecryptable(FrameError):
    """The data unit could not be decrypted (no key, bad key, bad padding).

    Not yielded by :class:`FrameReader`: such a frame is valid and arrives with an
    :class:`codec.model.Undecoded` body naming this reason.
    """

    reason = "undecryptable"
