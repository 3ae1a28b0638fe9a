"""Every pool option, checked once: :class:`PoolConfig`, and the checks it is made of.

A pool's options are validated when its :class:`PoolConfig` is built, and only
then: the pools, the psycopg_pool and asyncpg surfaces, ``PoolOptions`` and the
core all take the validated object.  Each error names the option, as the
class the user called spells it (``AsyncPool: max_size must be at least 1,
got 0``).  This module imports nothing else of fastpool, so that every layer
may use it.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

__all__ = [
    "MAX_SIZE",
    "PoolConfig",
    "check_bool",
    "check_callable",
    "check_count",
    "check_duration",
    "check_seconds",
    "check_sizes",
    "config_of",
    "session_needed",
]

#: The most connections a pool may hold (PostgreSQL itself caps its backends at 262,143).
MAX_SIZE = 1_000_000


def _prefix(owner: str | None) -> str:
    return f"{owner}: " if owner else ""


def check_count(
    name: str, value: Any, minimum: int, maximum: int | None = None, *, owner: str | None = None
) -> int:
    """Return ``value`` if it is an int ``>= minimum`` (and ``<= maximum``); raise naming ``name``."""
    p = _prefix(owner)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{p}{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{p}{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{p}{name} must be at most {maximum:,}, got {value:,}")
    return value


def check_bool(name: str, value: Any, *, allow_none: bool = False, owner: str | None = None) -> bool | None:
    """Return ``value`` if it is a bool (or None when allowed); raise ``TypeError`` naming ``name``.

    Truthy strings such as ``"no"`` are refused rather than read as True.
    """
    if value is None and allow_none:
        return None
    if not isinstance(value, bool):
        raise TypeError(f"{_prefix(owner)}{name} must be True or False, got {value!r}")
    return value


def check_sizes(
    min_name: str, min_size: Any, max_name: str, max_size: Any, *, owner: str | None = None
) -> None:
    """Check ``0 <= min_size <= max_size`` and ``1 <= max_size <= MAX_SIZE`` (nothing is clamped)."""
    check_count(max_name, max_size, 1, MAX_SIZE, owner=owner)
    check_count(min_name, min_size, 0, MAX_SIZE, owner=owner)
    if min_size > max_size:
        raise ValueError(
            f"{_prefix(owner)}{min_name} ({min_size}) cannot be greater than {max_name} ({max_size})"
        )


def check_duration(
    name: str, value: Any, *, allow_none: bool, allow_zero: bool = False, owner: str | None = None
) -> float | None:
    """Return ``value`` as float seconds (> 0, or >= 0 with ``allow_zero``), finite, or None."""
    p = _prefix(owner)
    if value is None:
        if allow_none:
            return None
        raise TypeError(f"{p}{name} cannot be None")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{p}{name} must be a number of seconds, got {type(value).__name__}")
    v = float(value)
    if math.isnan(v) or math.isinf(v):
        raise ValueError(f"{p}{name} must be finite, got {value}")
    if v < 0 or (v == 0 and not allow_zero):
        raise ValueError(
            f"{p}{name} must be {'at least 0' if allow_zero else 'more than 0'} seconds, got {value}"
        )
    return v


def check_seconds(name: str, value: Any, *, allow_zero: bool = False, owner: str | None = None) -> float:
    """Return ``value`` as float seconds (> 0, or >= 0 with ``allow_zero``), finite; never None."""
    v = check_duration(name, value, allow_none=False, allow_zero=allow_zero, owner=owner)
    assert v is not None
    return v


def check_callable(name: str, value: Any, *, owner: str | None = None) -> Any:
    """Return ``value`` if it is None or callable; raise ``TypeError`` naming ``name``."""
    if value is not None and not callable(value):
        raise TypeError(f"{_prefix(owner)}{name} must be callable or None, got {type(value).__name__}")
    return value


def session_needed(what: str, why: str, pool: str) -> str:
    """The message refusing ``what`` on a pool with ``transaction_pooling=True``."""
    return (
        f"{what} needs session pooling ({why}), but {pool} has transaction_pooling=True: with "
        "transaction pooling (PgBouncer's transaction mode) every transaction may run on another "
        "server session"
    )


Hook = Callable[..., Any]

#: (option, allow None, allow 0) of every option in seconds
_DURATIONS = (
    ("acquire_timeout", False, False),
    ("max_lifetime", True, False),
    ("idle_timeout", True, False),
    ("verify_after", False, True),
    ("release_timeout", False, False),
    ("fail_fast_after", True, True),
    ("reconnect_timeout", True, False),
    ("leak_timeout", True, False),
    ("queue_target", True, False),
    ("queue_interval", False, False),
)
_BOOLS = ("test_before_acquire", "keep_idle", "open", "start")
_CALLABLES = ("after_connect", "before_acquire", "after_release", "reconnect_failed")


@dataclass(frozen=True)
class PoolConfig:
    """A pool's options, validated when built; see :class:`fastpool.AsyncPool` for what each does.

    ``owner`` is the class the user called, named by every error; ``aliases``
    maps an option to the name that class gives it (``PoolOptions`` says
    ``max_connections`` for ``max_size``).  Durations are stored as floats.
    Raises ``TypeError`` or ``ValueError`` naming the first bad option.
    """

    min_size: int = 0
    max_size: int = 10
    acquire_timeout: float = 30.0
    max_lifetime: float | None = 1800.0
    idle_timeout: float | None = 600.0
    test_before_acquire: bool = True
    verify_after: float = 1.0
    after_connect: Hook | None = None
    before_acquire: Hook | None = None
    after_release: Hook | None = None
    queue_mode: Literal["lifo", "fifo"] = "lifo"
    max_waiting: int = 0
    num_workers: int = 3
    release_timeout: float = 5.0
    fail_fast_after: float | None = 10.0
    name: str | None = None
    reconnect_timeout: float | None = None
    reconnect_failed: Callable[[Any], Any] | None = None
    keep_idle: bool = True
    max_uses: int = 0
    leak_timeout: float | None = None
    queue_target: float | None = None
    queue_interval: float = 1.0
    open: bool = True
    start: bool = True
    owner: str = field(default="pool", compare=False, repr=False)
    aliases: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        owner, alias = self.owner, self.aliases.get
        min_name, max_name = alias("min_size", "min_size"), alias("max_size", "max_size")
        check_sizes(min_name, self.min_size, max_name, self.max_size, owner=owner)
        for opt, allow_none, allow_zero in _DURATIONS:
            value = check_duration(
                alias(opt, opt), getattr(self, opt), allow_none=allow_none, allow_zero=allow_zero, owner=owner
            )
            object.__setattr__(self, opt, value)
        for opt in _BOOLS:
            check_bool(alias(opt, opt), getattr(self, opt), owner=owner)
        for opt in _CALLABLES:
            check_callable(alias(opt, opt), getattr(self, opt), owner=owner)
        if self.queue_mode not in ("lifo", "fifo"):
            raise ValueError(f"{owner}: {alias('queue_mode', 'queue_mode')} must be 'lifo' or 'fifo', "
                             f"got {self.queue_mode!r}")  # fmt: skip
        check_count(alias("max_waiting", "max_waiting"), self.max_waiting, 0, owner=owner)
        check_count(alias("num_workers", "num_workers"), self.num_workers, 1, 1000, owner=owner)
        check_count(alias("max_uses", "max_uses"), self.max_uses, 0, owner=owner)
        if self.name is not None:
            object.__setattr__(self, "name", str(self.name))
        if not self.keep_idle and self.min_size:
            raise ValueError(f"{owner}: min_size must be 0 when idle connections are not kept")

    @property
    def lifo(self) -> bool:
        """True when the most recently returned idle connection is handed out first."""
        return self.queue_mode == "lifo"

    def with_sizes(self, min_size: int, max_size: int) -> PoolConfig:
        """A copy with new sizes (``resize``), checked as at construction."""
        check_sizes("min_size", min_size, "max_size", max_size, owner=self.owner)
        return _replace(self, min_size=min_size, max_size=max_size)


def config_of(owner: str, options: Mapping[str, Any]) -> PoolConfig:
    """``PoolConfig(**options)`` for the class ``owner``; an unknown keyword is named as the user
    wrote it (``Pool() got an unexpected keyword argument 'max_szie' (did you mean 'max_size'?)``)."""
    known = [f.name for f in fields(PoolConfig) if f.name not in ("owner", "aliases")]
    for name in options:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TypeError(f"{owner}() got an unexpected keyword argument {name!r}{hint}")
    return PoolConfig(**options, owner=owner)


def _replace(config: PoolConfig, **changes: Any) -> PoolConfig:
    values = {k: getattr(config, k) for k in config.__dataclass_fields__}
    values.update(changes)
    return PoolConfig(**values)
