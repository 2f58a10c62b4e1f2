"""Structured logging: one event name per line, key=value context (structlog).

``configure()`` is called once by the CLI. Twisted's own log events (including
unhandled errors in Deferreds) are bridged into the same stream as ``twisted_log``
/ ``unhandled_error`` events, so an operator reads one format.

Passwords never reach a log line: :func:`mask` replaces them, and the platform-login
JSON is masked before a frame is logged.
"""

from __future__ import annotations

import sys
from typing import Any

import structlog

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
_SECRET_KEYS = frozenset({"password", "secret", "token", "password_hash", "operator_secret"})


def mask(value: Any) -> Any:
    """A copy of ``value`` with every secret-looking key replaced by '***'."""
    if isinstance(value, dict):
        return {k: ("***" if k in _SECRET_KEYS and v else mask(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v) for v in value]
    return value


def _mask_processor(logger, method, event_dict):
    for key in _SECRET_KEYS & event_dict.keys():
        event_dict[key] = "***"
    return event_dict


def configure(level: str = "info", fmt: str = "logfmt", stream=None) -> None:
    renderer = (structlog.processors.JSONRenderer() if fmt == "json"
                else structlog.processors.LogfmtRenderer(key_order=["timestamp", "level", "event"],
                                                         drop_missing=True))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _mask_processor,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.WriteLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=True,
    )


def bridge_twisted() -> None:
    """Send Twisted's log events (failures included) into structlog."""
    from twisted.logger import formatEvent, globalLogBeginner

    log = structlog.get_logger("twisted")

    def observer(event: dict) -> None:
        failure = event.get("log_failure")
        text = formatEvent(event)
        if failure is not None:
            log.error("unhandled_error", message=text, failure=failure.getTraceback())
        elif event.get("log_level") is not None and event["log_level"].name in ("error", "critical"):
            log.error("twisted_log", message=text)
        else:
            log.debug("twisted_log", message=text)

    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False, discardBuffer=True)


def get(name: str = "relay", **context: Any):
    return structlog.get_logger(name).bind(**context)
