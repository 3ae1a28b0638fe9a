"""Option checks shared by every pool constructor: each error names its option."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["check_callable", "check_count", "check_duration", "check_sizes"]


def check_count(name: str, value: Any, minimum: int) -> int:
    """Return ``value`` if it is an int ``>= minimum``; raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def check_sizes(min_name: str, min_size: Any, max_name: str, max_size: Any) -> None:
    """Check ``0 <= min_size <= max_size`` and ``max_size >= 1`` (nothing is clamped)."""
    check_count(max_name, max_size, 1)
    check_count(min_name, min_size, 0)
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


def check_callable(name: str, value: Any) -> Any:
    """Return ``value`` if it is None or callable; raise ``TypeError`` naming ``name``."""
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable or None, got {type(value).__name__}")
    return value
