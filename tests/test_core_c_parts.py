"""What only C does for the core (``fastpool._core``) and its pure-Python build (``_core_pure``).

The same tests run on both: the mutex keeps ``threading.Lock``'s contract, the
clock is ``time.monotonic``'s, the probe tells readable from idle sockets, and
the asyncio borrow is a finished awaitable that hands ``async with`` to its
path.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import threading
import time
from types import ModuleType
from typing import Any

import pytest

from fastpool import _core_pure

from .conftest import compiled_expected


def _compiled_parts() -> ModuleType:
    try:
        from fastpool import _core  # type: ignore[attr-defined]
    except ImportError as exc:
        if compiled_expected():
            pytest.fail(f"the compiled core should have loaded and did not: {exc}")
        pytest.skip(f"compiled core not built: {exc}")
    return _core  # type: ignore[no-any-return]


@pytest.fixture(params=["c", "python"], ids=["parts=c", "parts=python"])
def parts(request: pytest.FixtureRequest) -> ModuleType:
    """``fastpool._core`` or its pure-Python build ``fastpool._core_pure`` (the test runs on both)."""
    return _compiled_parts() if request.param == "c" else _core_pure


def test_same_public_names() -> None:
    c = _compiled_parts()
    # these are C-level in the compiled build (inline functions of _core.pxd)
    c_level = ("fd_readable", "now", "slot_get", "slot_set", "step")
    assert sorted(c.__all__) == sorted(n for n in _core_pure.__all__ if n not in c_level)
    for name in c.__all__:
        a, b = getattr(c, name), getattr(_core_pure, name)
        if not isinstance(a, type):
            assert inspect.cleandoc(a.__doc__ or "") == inspect.cleandoc(b.__doc__ or ""), name


def test_lock_keeps_threading_locks_contract(parts: ModuleType) -> None:
    lock = parts.Lock()
    assert lock.acquire() is True and lock.locked()
    assert lock.acquire(False) is False
    t0 = time.monotonic()
    assert lock.acquire(True, 0.05) is False
    assert time.monotonic() - t0 >= 0.04
    lock.release()
    assert not lock.locked()
    with pytest.raises(RuntimeError):
        lock.release()
    with lock:
        assert lock.locked()
    assert not lock.locked()
    with pytest.raises(KeyError), lock:
        raise KeyError("inside")
    assert not lock.locked(), "an exception inside `with` releases the lock"
    counter = [0]

    def bump() -> None:
        for _ in range(20000):
            with lock:
                counter[0] += 1

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counter[0] == 80000
    got: list[bool] = []
    lock.acquire()
    waiter = threading.Thread(target=lambda: got.append(lock.acquire(True, 5)))
    waiter.start()
    time.sleep(0.05)
    lock.release()  # a thread blocked in acquire (GIL released) gets it
    waiter.join(5)
    assert got == [True]
    lock.release()


def test_clock_is_time_monotonic(parts: ModuleType) -> None:
    for _ in range(100):
        before = time.monotonic()
        t = parts.monotonic()
        after = time.monotonic()
        assert before - 1e-6 <= t <= after + 1e-6


def test_readable_probe(parts: ModuleType) -> None:
    a, b = socket.socketpair()
    try:
        assert parts.readable(a.fileno()) is False
        b.send(b"x")
        assert parts.readable(a.fileno()) is True
        a.recv(1)
        b.close()
        assert parts.readable(a.fileno()) is True, "EOF counts as readable"
    finally:
        a.close()
    never_open = 2**30  # far above any descriptor limit: never open
    with pytest.raises(OSError):
        parts.readable(never_open)


def test_pure_probe_codes() -> None:
    """The pure probe gives the C probe's codes: 0 idle, 1 readable, < 0 invalid."""
    a, b = socket.socketpair()
    try:
        assert _core_pure.fd_readable(a.fileno()) == 0
        b.send(b"x")
        assert _core_pure.fd_readable(a.fileno()) == 1
    finally:
        a.close()
        b.close()
    assert _core_pure.fd_readable(2**30) < 0


def test_async_borrow_is_a_finished_awaitable(parts: ModuleType) -> None:
    done = parts.AsyncBorrow.__new__(parts.AsyncBorrow)
    done._result = ("the", "result")

    async def main() -> Any:
        return await done

    assert asyncio.run(main()) == ("the", "result")
    assert done._result is None, "the result is handed over once"

    async def misuse() -> None:
        async with parts.AsyncBorrow.__new__(parts.AsyncBorrow):
            pass

    with pytest.raises(TypeError, match="not a connection"):
        asyncio.run(misuse())


def test_async_borrow_is_not_a_path(parts: ModuleType) -> None:
    """``PathBase`` is abstract: a borrow on it raises instead of entering."""
    b = parts.AsyncBorrow.__new__(parts.AsyncBorrow)
    if parts is _core_pure:
        b._fp = parts.PathBase()
        with pytest.raises(NotImplementedError):
            b.__aenter__()
    else:  # the compiled borrow's path is set only by the compiled core (a C field)
        with pytest.raises(AttributeError):
            b._fp = parts.PathBase()
