"""The state of a pool's connects: backoff, the breaker (``fail_fast_after``), ``reconnect_timeout``."""

from __future__ import annotations

import random
from typing import Any

from ..errors import PoolTimeout

__all__ = ["BACKOFF_INITIAL", "BACKOFF_MAX", "Breaker"]

BACKOFF_INITIAL = 0.01
BACKOFF_MAX = 1.0


class Breaker:
    """A streak of failed connects, and what follows from it.

    The breaker is open once every connect for ``fail_fast_after`` seconds has
    failed: callers are refused at once (:meth:`error`) instead of queueing
    for a server that is not there, while the pool keeps reconnecting with
    jittered exponential backoff.  The first success closes it.  Every
    ``reconnect_timeout`` of failures, :meth:`failed` says the pool gives up
    once (``reconnect_failed`` is called), and it keeps trying.
    """

    __slots__ = (
        "after",
        "backoff",
        "demand_at",
        "failing_since",
        "last_error",
        "last_error_at",
        "reconnect_planned",
        "reconnect_since",
        "reconnect_timeout",
    )

    def __init__(self, fail_fast_after: float | None, reconnect_timeout: float | None) -> None:
        self.after = fail_fast_after
        self.reconnect_timeout = reconnect_timeout
        self.reset()
        self.last_error: BaseException | None = None
        self.last_error_at = 0.0

    def reset(self) -> None:
        """Forget the streak (a new pool in a forked child)."""
        self.backoff = BACKOFF_INITIAL
        self.failing_since: float | None = None  # the first failed connect of the current streak
        self.reconnect_since = 0.0  # the start of the current reconnect_timeout round
        self.demand_at = -1e9  # when an acquire was last refused by the breaker
        self.reconnect_planned = False

    def is_open(self, now: float) -> bool:
        """True once every connect for ``fail_fast_after`` seconds has failed."""
        since = self.failing_since
        return self.after is not None and since is not None and now - since >= self.after

    def failing_for(self, now: float) -> float:
        """How long connects have been failing (0 when the last one succeeded)."""
        return 0.0 if self.failing_since is None else now - self.failing_since

    def note_error(self, exc: BaseException, now: float) -> None:
        """Remember ``exc`` as the latest cause (a failed connect or health check)."""
        self.last_error, self.last_error_at = exc, now

    def failed(self, exc: BaseException, now: float) -> bool:
        """Book a failed connect; True once per ``reconnect_timeout`` of failures (give up once)."""
        self.note_error(exc, now)
        if self.failing_since is None:
            self.failing_since = self.reconnect_since = now
            return False
        if self.reconnect_timeout is not None and now - self.reconnect_since > self.reconnect_timeout:
            self.reconnect_since = now  # a new round starts; the pool keeps trying with backoff
            return True
        return False

    def next_delay(self) -> float:
        """The delay before the next retry (jittered), doubling the backoff up to its maximum."""
        delay = self.jittered()
        self.backoff = min(self.backoff * 2, BACKOFF_MAX)
        return delay

    def jittered(self) -> float:
        """The current backoff, jittered to half or more of it."""
        return self.backoff * (0.5 + 0.5 * random.random())

    def succeeded(self) -> None:
        """A connect succeeded: the breaker closes and the backoff starts over."""
        self.backoff = BACKOFF_INITIAL
        self.failing_since = None

    def error(self, now: float, name: str, driver: Any) -> PoolTimeout:
        """The error of an acquire refused while the breaker is open: target, duration, cause."""
        since = self.failing_since if self.failing_since is not None else now
        cause = self.last_error
        detail = ""
        if cause is not None:
            text = str(cause).strip()
            detail = f"; last error: {driver.redact(text.splitlines()[0] if text else type(cause).__name__)}"
        err = PoolTimeout(
            f"{name}: no connection: connecting to {driver.describe()} has failed for "
            f"{now - since:.1f} s (fail_fast_after={self.after:g} s){detail}"
        )
        err.__cause__ = driver.safe_error(cause)
        return err
