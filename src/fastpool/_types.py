"""Types shared by the pools of both kinds: the connection type variable, hooks, options."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, TypedDict, TypeVar

import psycopg
from psycopg.rows import TupleRow

from ._meta import ConnectionMetadata

if sys.version_info >= (3, 13):
    from typing import TypeVar as TypeVarWithDefault
else:
    from typing_extensions import TypeVar as TypeVarWithDefault

__all__ = [
    "AsyncConnT",
    "AsyncConninfo",
    "AsyncKwargs",
    "C",
    "ConnT",
    "Conninfo",
    "Hook",
    "Kwargs",
    "PoolSettings",
]

C = TypeVar("C")
#: The connection class of a psycopg pool: ``Pool[MyConnection]`` hands out ``MyConnection``.
ConnT = TypeVarWithDefault("ConnT", bound=psycopg.Connection[Any], default=psycopg.Connection[TupleRow])
AsyncConnT = TypeVarWithDefault(
    "AsyncConnT", bound=psycopg.AsyncConnection[Any], default=psycopg.AsyncConnection[TupleRow]
)
#: Connection parameters, or a function giving them for each new connection (credentials that rotate)
Conninfo = str | Callable[[], str]
AsyncConninfo = str | Callable[[], str] | Callable[[], Awaitable[str]]
Kwargs = Mapping[str, Any] | Callable[[], Mapping[str, Any]]
AsyncKwargs = Mapping[str, Any] | Callable[[], Mapping[str, Any]] | Callable[[], Awaitable[Mapping[str, Any]]]
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
