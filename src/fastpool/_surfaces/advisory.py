"""PostgreSQL advisory-lock keys, the SQL of the leadership guards, and their errors."""

from __future__ import annotations

import hashlib
import threading
import weakref
from typing import Any

from ..errors import Error

__all__ = [
    "LeadershipLost",
    "LeadershipNotAcquired",
    "LockKey",
    "advisory_key",
    "claim",
    "fn_sql",
    "lock_parts",
    "normalize_key",
    "unclaim",
]

LockKey = int | str | tuple[int, int]
_INT64 = (-(1 << 63), (1 << 63) - 1)
_INT32 = (-(1 << 31), (1 << 31) - 1)

EXISTS_SQL = (
    "SELECT EXISTS(SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
    " AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND classid = %s AND objid = %s AND objsubid = %s)"
)


class LeadershipNotAcquired(Error):
    """Another session (or another guard of this process) holds the lock."""

    __module__ = "fastpool"

    def __init__(self, key: int | tuple[int, int]) -> None:
        super().__init__(f"leadership not acquired: advisory lock {key!r} is held by another session")
        self.key = key


class LeadershipLost(Error):
    """The lock is no longer held (the session ended, or the lock was released behind our back)."""

    __module__ = "fastpool"

    def __init__(self, key: int | tuple[int, int], cause: BaseException | None = None) -> None:
        super().__init__(f"leadership lost: advisory lock {key!r} is no longer held")
        self.key = key
        self.__cause__ = cause


def advisory_key(name: str) -> int:
    """Return the stable int64 lock key of ``name``: the first 8 bytes of its SHA-256, signed.

    Equal to the SQL ``('x' || substr(encode(sha256(convert_to(name, 'UTF8')), 'hex'), 1, 16))
    ::bit(64)::bigint``, in every process (never Python's ``hash()``).
    """
    if not isinstance(name, str):
        raise TypeError(f"key: advisory_key() takes a str, got {type(name).__name__}")
    if not name:
        raise ValueError("key: an empty name is not a lock key")
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big", signed=True)


def normalize_key(key: Any) -> int | tuple[int, int]:
    """Check ``key`` and turn a name into its int64; raise ``ValueError``/``TypeError`` naming it."""
    if isinstance(key, bool):
        raise TypeError("key: a bool is not a lock key")
    if isinstance(key, int):
        if not _INT64[0] <= key <= _INT64[1]:
            raise ValueError(f"key: {key} does not fit in a bigint (int64)")
        return key
    if isinstance(key, str):
        return advisory_key(key)
    if isinstance(key, tuple) and len(key) == 2 and all(type(k) is int for k in key):
        if not all(_INT32[0] <= k <= _INT32[1] for k in key):
            raise ValueError(f"key: {key} is not a pair of int32")
        return (key[0], key[1])
    raise TypeError(f"key: expected an int, a str or a pair of ints, got {type(key).__name__}")


def lock_parts(key: int | tuple[int, int]) -> tuple[int, int, int]:
    """The (classid, objid, objsubid) under which ``pg_locks`` shows ``key``."""
    if isinstance(key, tuple):
        return key[0] & 0xFFFFFFFF, key[1] & 0xFFFFFFFF, 2
    return (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF, 1


def fn_sql(fn: str, key: int | tuple[int, int]) -> tuple[str, tuple[int, ...]]:
    if isinstance(key, tuple):
        return f"SELECT {fn}(%s::int4, %s::int4)", key
    return f"SELECT {fn}(%s::int8)", (key,)


# -- which guard of this process holds a key, per pool (a guard never asks the server twice) --

_held: weakref.WeakKeyDictionary[Any, dict[Any, weakref.ReferenceType[Any]]] = weakref.WeakKeyDictionary()
_held_lock = threading.Lock()


def claim(pool: Any, guard: Any) -> bool:
    """Register ``guard`` as this process's holder of its key on ``pool``; False if another live guard is."""
    with _held_lock:
        keys = _held.setdefault(pool, {})
        ref = keys.get(guard.key)
        other = ref() if ref is not None else None
        if other is not None and other is not guard and other._state != RELEASED:
            return False
        keys[guard.key] = weakref.ref(guard)
        return True


def unclaim(pool: Any, guard: Any) -> None:
    """Forget ``guard`` as the holder of its key (if it is)."""
    with _held_lock:
        keys = _held.get(pool)
        if keys is None:
            return
        ref = keys.get(guard.key)
        if ref is not None and ref() in (guard, None):
            del keys[guard.key]


#: The states of a guard.
NEW, HELD, RELEASED = 0, 1, 2
