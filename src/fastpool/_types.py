"""Types shared by the pools of both kinds: the connection type variable, hooks, options."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypedDict, TypeVar

from ._meta import ConnectionMetadata

__all__ = ["C", "Hook", "PoolSettings"]

C = TypeVar("C")
Hook = Callable[[Any, ConnectionMetadata], Any]


class PoolSettings(TypedDict, total=False):
    """The options every pool takes (see :class:`fastpool.Pool` for what each does)."""

    min_size: int
    max_size: int
    acquire_timeout: float
    max_lifetime: float | None
    idle_timeout: float | None
    test_before_acquire: bool
    verify_after: float
    after_connect: Hook | None
    before_acquire: Hook | None
    after_release: Hook | None
    queue_mode: Literal["lifo", "fifo"]
    max_waiting: int
    num_workers: int
    release_timeout: float
    open: bool
    name: str | None
