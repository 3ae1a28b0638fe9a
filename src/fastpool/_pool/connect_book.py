"""The I/O-free side of connecting, for :class:`~fastpool._pool.common.PoolCommon`: what a
finished or failed connect changes in the core, the breaker and the counters, who is woken
or failed, and what is logged.  The connector (``connecting``/``connecting_async``) does the
I/O and calls these."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from time import monotonic
from typing import Any, ClassVar

from .._drivers.base import Driver
from .._settings import PoolConfig
from .breaker import Breaker

__all__ = ["ConnectBook"]


class ConnectBook:
    """Connect bookkeeping, mixed into the pool (whose ``__init__`` sets what is declared here)."""

    _closed: bool
    _name: str
    _lock: Any
    _core: Any
    _runner: Any
    _connector: Any
    _breaker: Breaker
    _driver: Driver
    _config: PoolConfig
    _counters: dict[str, int]
    _on_connect: Callable[[float], None] | None
    _acquire_timeout: float
    _eager_waiting: bool
    _log: ClassVar[logging.Logger]

    def _start_connects(self, n: int) -> None:
        """Open ``n`` connections reserved in the core, in the background (or give them back)."""
        if self._closed or not self._runner.running:
            with self._lock:
                for _ in range(n):
                    self._core.connect_failed()
            return
        for _ in range(n):
            self._runner.spawn(self._connector.connect)

    def _connect_done(self, conn: Any, data: Any, started: float) -> Any:
        """Book a new connection; return the waiter it was handed to, or None."""
        done = monotonic()
        with self._lock:
            w = self._core.connect_done(conn, done, data)
            self._breaker.succeeded()
            self._counters["connect_ms"] += int((done - started) * 1000)
            self._core.observe_connect(done - started)
        if self._on_connect is not None:
            self._on_connect(done - started)
        return w

    def _connect_failure(
        self, exc: BaseException, retry: bool, hook: bool
    ) -> tuple[list[Any], int, float, bool]:
        """Book a failed connect: (waiters to wake, connects to retry, backoff delay, gave up).

        A failure not worth retrying (a database that does not exist, a bad password or
        option, a bug in ``after_connect``) fails every queued waiter at once; so does the
        breaker opening (``fail_fast_after``).  ``gave up`` is True once per streak of
        failures longer than ``reconnect_timeout``.
        """
        now = monotonic()
        breaker = self._breaker
        failed: list[Any] = []
        with self._lock:
            gave_up = breaker.failed(exc, now)
            if not retry or breaker.is_open(now):
                while (w := self._core.fail_waiter()) is not None:  # each its own error object
                    if retry:
                        w.error = breaker.error(now, self._name, self._driver)
                    elif hook:  # the hook's own exception
                        w.error = copy.copy(exc) if failed else exc
                    else:
                        w.error = self._driver.connect_error(exc)
                    failed.append(w)
            n = self._core.connect_failed()
            delay = breaker.next_delay()
        self._log.info(
            "%s: connecting to %s failed (%s): %s",
            self._name,
            self._driver.describe(),
            "will retry" if retry else "not retryable",
            self._driver.redact(str(exc).strip()),
        )
        if retry and self._eager_waiting:  # the eager open waits: say why now, not 10 s later
            self._eager_waiting = False
            limit = self._config.fail_fast_after
            self._log.warning(
                "%s: cannot connect to %s yet (%s); retrying for up to %g s before the open fails (%s)",
                self._name,
                self._driver.describe(),
                self._driver.redact(str(exc).strip().splitlines()[0]),
                self._acquire_timeout if limit is None else min(limit, self._acquire_timeout),
                "acquire_timeout" if limit is None or limit >= self._acquire_timeout else "fail_fast_after",
            )
        if gave_up:
            self._log.warning(
                "%s: connecting to %s has failed for more than %s s",
                self._name,
                self._driver.describe(),
                breaker.reconnect_timeout,
            )
        return failed, n, delay, gave_up

    def _kick_reconnect(self) -> None:
        """Try one connect soon (after the backoff), unless one is under way or planned."""
        if self._breaker.reconnect_planned or self._closed:
            return
        self._breaker.reconnect_planned = True
        self._runner.later(self._breaker.jittered(), self._reconnect_once)

    def _reconnect_once(self) -> None:
        self._breaker.reconnect_planned = False
        with self._lock:
            n = self._core.add_connects(1)
        if n:
            self._start_connects(n)
