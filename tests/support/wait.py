"""Waiting for a condition on a real reactor: poll with a deadline, never a blind sleep."""

from __future__ import annotations

from twisted.internet.defer import Deferred


def sleep(reactor, seconds: float) -> Deferred:
    d: Deferred = Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


async def until(reactor, check, timeout: float = 20.0, every: float = 0.05, what: str = "condition"):
    """Await ``check()`` (sync or returning a Deferred) until it is truthy; fail after ``timeout``."""
    from twisted.internet.defer import maybeDeferred

    end = reactor.seconds() + timeout
    while True:
        value = await maybeDeferred(check)
        if value:
            return value
        if reactor.seconds() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value {value!r})")
        await sleep(reactor, every)
