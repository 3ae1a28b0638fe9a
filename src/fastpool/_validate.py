"""Option checks shared by every pool constructor: each error names its option."""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "MAX_SIZE",
    "check_bool",
    "check_callable",
    "check_count",
    "check_duration",
    "check_options",
    "check_seconds",
    "check_sizes",
    "session_needed",
]


#: The most connections a pool may hold (PostgreSQL itself caps its backends at 262,143).
MAX_SIZE = 1_000_000


def check_count(name: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    """Return ``value`` if it is an int ``>= minimum`` (and ``<= maximum``); raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum:,}, got {value:,}")
    return value


def check_bool(name: str, value: Any, *, allow_none: bool = False) -> bool | None:
    """Return ``value`` if it is a bool (or None when allowed); raise ``TypeError`` naming ``name``.

    Truthy strings such as ``"no"`` are refused rather than read as True.
    """
    if value is None and allow_none:
        return None
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def check_sizes(min_name: str, min_size: Any, max_name: str, max_size: Any) -> None:
    """Check ``0 <= min_size <= max_size`` and ``1 <= max_size <= MAX_SIZE`` (nothing is clamped)."""
    check_count(max_name, max_size, 1, MAX_SIZE)
    check_count(min_name, min_size, 0, MAX_SIZE)
    if min_size > max_size:
        raise ValueError(f"{min_name} ({min_size}) cannot be greater than {max_name} ({max_size})")


def check_duration(name: str, value: Any, *, allow_none: bool, allow_zero: bool = False) -> float | None:
    """Return ``value`` as float seconds (> 0, or >= 0 with ``allow_zero``), finite, or None."""
    if value is None:
        if allow_none:
            return None
        raise TypeError(f"{name} cannot be None")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    v = float(value)
    if math.isnan(v) or math.isinf(v):
        raise ValueError(f"{name} must be finite, got {value}")
    if v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    return v


def check_seconds(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """Return ``value`` as float seconds (> 0, or >= 0 with ``allow_zero``), finite; never None."""
    v = check_duration(name, value, allow_none=False, allow_zero=allow_zero)
    assert v is not None
    return v


def check_callable(name: str, value: Any) -> Any:
    """Return ``value`` if it is None or callable; raise ``TypeError`` naming ``name``."""
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable or None, got {type(value).__name__}")
    return value


def check_options(
    *,
    min_size: Any,
    max_size: Any,
    acquire_timeout: Any,
    max_lifetime: Any,
    idle_timeout: Any,
    verify_after: Any,
    after_connect: Any,
    before_acquire: Any,
    after_release: Any,
    queue_mode: Any,
    max_waiting: Any,
    test_before_acquire: Any = True,
    release_timeout: Any = 5.0,
    fail_fast_after: Any = None,
    min_name: str = "min_size",
    max_name: str = "max_size",
) -> float:
    """Validate the pool options, naming the first bad one; return ``acquire_timeout`` as float.

    ``min_name``/``max_name`` let ``PoolOptions`` report its own (sqlx) names.
    """
    check_sizes(min_name, min_size, max_name, max_size)
    timeout = check_duration("acquire_timeout", acquire_timeout, allow_none=False)
    check_duration("max_lifetime", max_lifetime, allow_none=True)
    check_duration("idle_timeout", idle_timeout, allow_none=True)
    check_duration("verify_after", verify_after, allow_none=False, allow_zero=True)
    check_callable("after_connect", after_connect)
    check_callable("before_acquire", before_acquire)
    check_callable("after_release", after_release)
    if queue_mode not in ("lifo", "fifo"):
        raise ValueError(f"queue_mode must be 'lifo' or 'fifo', got {queue_mode!r}")
    check_count("max_waiting", max_waiting, 0)
    check_bool("test_before_acquire", test_before_acquire)
    check_seconds("release_timeout", release_timeout)
    check_duration("fail_fast_after", fail_fast_after, allow_none=True, allow_zero=True)
    assert timeout is not None
    return timeout


def session_needed(what: str, why: str, pool: str) -> str:
    """The message refusing ``what`` on a pool with ``transaction_pooling=True``."""
    return (
        f"{what} needs session pooling ({why}), but {pool} has transaction_pooling=True: with "
        "transaction pooling (PgBouncer's transaction mode) every transaction may run on another "
        "server session"
    )
