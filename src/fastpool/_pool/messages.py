"""What a pool's errors say: the caller's deadline, the phase it ran out in, the target, the
cause (with no secret in it); written once for both kinds of pool."""

from __future__ import annotations

from time import monotonic
from typing import Any

from ..errors import PoolClosed, PoolTimeout, TooManyRequests

__all__ = ["closed_error", "eager_open_error", "timeout_error", "wait_error"]


def closed_error(name: str, opened: bool) -> PoolClosed:
    """The error of a call on a pool that is not open (yet, or any more)."""
    if not opened:
        return PoolClosed(f"the pool {name!r} is not open yet")
    return PoolClosed(f"the pool {name!r} is already closed")


def timeout_error(pool: Any, timeout: float, started: float) -> PoolTimeout:
    """A caller's timeout: what it waited for (a connection, or a connect and why it failed)."""
    core = pool._core
    driver = pool._driver
    breaker = pool._breaker
    cause = breaker.last_error if breaker.last_error_at >= started - timeout else None
    if cause is not None or (core.connecting and core.in_use < core.max_size):
        phase = f"connecting to {driver.describe()}"
        if cause is not None:
            first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
            phase += f" (last error: {driver.redact(first)})"
    else:
        phase = f"waiting for a connection (max_size={core.max_size}, in use={core.in_use})"
    err = PoolTimeout(f"couldn't get a connection after {timeout:.3g} s: timed out {phase}")
    err.__cause__ = driver.safe_error(cause)
    return err


def wait_error(pool: Any, w: Any, shed: bool, start: float, timeout: float) -> BaseException:
    """What a waiter that was not served raises: its failure, being shed, or its timeout."""
    if w.error is not None:
        return w.error  # type: ignore[no-any-return]
    if shed:
        return TooManyRequests(
            f"{pool._name}: shed after {monotonic() - start:.3g} s: waits for a connection stayed "
            f"above queue_target ({pool._shedder.target:g} s) for a queue_interval"
        )
    return timeout_error(pool, timeout, start)


def eager_open_error(pool: Any, exc: PoolTimeout, want: int) -> PoolTimeout:
    """The error of an eager open that failed: target, and the cause or the timeout; no password."""
    driver = pool._driver
    cause = exc.__cause__
    if cause is not None:
        detail = driver.redact(str(cause).strip())
    else:
        detail = f"timed out after acquire_timeout={pool._acquire_timeout:.3g} s"
    err = PoolTimeout(f"{pool._name}: could not open {want} connection(s) to {driver.describe()}: {detail}")
    err.__cause__ = driver.safe_error(cause)
    return err
