"""The borrow paths (``FastPath``, ``AsyncFastPath``) of both core builds, driven in lockstep.

A recording stand-in for the pool receives every call the fast path hands to
Python (``_admit``, ``_get_slow``, ``_release``, ``_release_block``,
``_close_doomed``, ``_not_lent``, and the asyncio pool's awaitable ones);
random sequences of ``connection()`` blocks, gets, returns, getconn/putconn and
releases must give the same results, the same calls and the same core counters
on both builds, for every get and put mode that needs no driver's gates.  The
psycopg driver's gates are driven on real connections in
``test_psycopg_gates.py``.
"""

from __future__ import annotations

import asyncio
import random
import weakref
from collections.abc import Awaitable
from typing import Any

import pytest

from .conftest import load_build, new_core

DISCRETE = (
    "size", "idle", "in_use", "waiting", "hits", "handoffs", "waits", "expired", "discarded", "returns",
)  # fmt: skip


class FakePool:
    """What the fast path calls back into: records the calls; the slow paths give fresh entries."""

    def __init__(self, mod: Any, core: Any, admit: bool) -> None:
        self.mod = mod
        self.core = core
        self.admit = admit
        self.calls: list[tuple[Any, ...]] = []
        self.serial = 0

    def _admit(self, e: Any, now: float, timeout: Any) -> bool:
        self.calls.append(("admit", int(e.serial)))
        if not self.admit:
            self.core.release(e, now)
        return self.admit

    def _get_slow(self, now: float, timeout: Any) -> Any:
        self.calls.append(("slow",))
        e = self.core.acquire(now)
        if e is None and self.core.add_connects(1):  # room for one more: open it, as a worker would
            self.serial += 1
            assert self.core.connect_done(f"conn{self.serial}", now) is None  # nobody queues here
            e = self.core.acquire(now)
        if e is None:
            raise TimeoutError("no connection")
        return e

    def _release(self, e: Any) -> None:
        self.calls.append(("release", int(e.serial)))
        self.core.release(e, 0.0)

    def _release_block(self, e: Any, ok: bool) -> None:
        self.calls.append(("release_block", int(e.serial), ok))
        self.core.release(e, 0.0)

    def _close_doomed(self) -> None:
        self.calls.append(("close_doomed", len(self.core.take_doomed())))

    def _not_lent(self, conn: Any) -> None:
        self.calls.append(("not_lent",))
        raise ValueError("not lent")


def _failed(exc: Exception) -> tuple[str, Any]:
    """What a step that raised gives: what its block raised, or the error's name."""
    if isinstance(exc, KeyError):
        return ("raised in block", exc.args[0])
    return ("error", type(exc).__name__)


def lockstep_modes(test: Any) -> Any:
    """Run ``test`` for every get mode, put mode and admission verdict the fake pool can give."""
    test = pytest.mark.parametrize("get_mode", ["GET_PLAIN", "GET_ADMIT", "GET_GATE"])(test)
    test = pytest.mark.parametrize("put_mode", ["PUT_PLAIN", "PUT_SLOW", "PUT_GATE"])(test)
    return pytest.mark.parametrize("admit", [True, False])(test)


def _sequences(ops: list[str]) -> Any:
    """25 seeded sequences of 120 (op, arg) steps, each with a pool size."""
    for seed in range(25):
        rnd = random.Random(seed)
        max_size = rnd.randint(1, 4)
        yield seed, max_size, [(rnd.choice(ops), rnd.random()) for _ in range(120)]


def _same(a: Any, b: Any, ra: Any, rb: Any, where: str) -> bool:
    """Both builds gave the same result, made the same calls and kept the same counts; True when
    the step did something (borrowed, returned, lent)."""
    assert ra == rb, f"{where}: c={ra!r} python={rb!r}"
    assert a.pool.calls == b.pool.calls, where
    sa, sb = a.core.stats(), b.core.stats()
    assert {k: sa[k] for k in DISCRETE} == {k: sb[k] for k in DISCRETE}, where
    assert len(a.fast.lent) == len(b.fast.lent) == len(a.lent), where
    return ra not in ("skip", "bound") and not (isinstance(ra, tuple) and ra[0] == "error")


class Side:
    def __init__(self, build: str, get_mode: str, put_mode: str, admit: bool, max_size: int) -> None:
        mod = load_build(build)
        self.core = new_core(mod, max_size)
        self.pool = FakePool(mod, self.core, admit)
        modes = getattr(mod, get_mode), getattr(mod, put_mode)
        self.fast = mod.FastPath(weakref.ref(self.pool), self.core, mod.Lock(), mod.Gates(), *modes, True)
        self.held: list[Any] = []  # entries out, by get
        self.lent: list[Any] = []  # connections out, by getconn

    def step(self, op: str, arg: float) -> Any:
        f = self.fast
        try:
            if op == "get":
                e = f.get(None)
                self.held.append(e)
                return ("got", int(e.serial))
            if op == "getconn":
                conn = f.getconn(None)
                self.lent.append(conn)
                return ("lent", conn)
            if op in ("put", "release_block", "release") and self.held:
                e = self.held.pop(int(arg * len(self.held)) % len(self.held))
                if op == "put":
                    return f.put(e)
                if op == "release_block":
                    return f.release_block(e, arg < 0.5)
                return f.release(e, 0.0)
            if op == "putconn" and self.lent:
                conn = self.lent.pop(int(arg * len(self.lent)) % len(self.lent))
                f.putconn(conn)
                if arg < 0.2:  # and once more: the second time it is not lent
                    f.putconn(conn)
                return "put"
            if op == "take_back_stranger":
                return f.take_back(object())
            if op == "borrow":  # a connection() block, raising inside when arg < 0.3
                with f.connection(None) as conn:
                    if arg < 0.3:
                        raise KeyError(conn)
                return ("borrowed", conn)
            return "skip"
        except (TimeoutError, ValueError, KeyError) as exc:
            return _failed(exc)


@lockstep_modes
def test_fast_paths_in_lockstep(get_mode: str, put_mode: str, admit: bool) -> None:
    load_build("c")  # skips when the compiled core is not built (fails when it is required)
    ops = ["get", "getconn", "put", "release_block", "release", "putconn", "take_back_stranger", "borrow"]
    out = 0
    for seed, max_size, steps in _sequences(ops):
        a = Side("c", get_mode, put_mode, admit, max_size)
        b = Side("python", get_mode, put_mode, admit, max_size)
        for i, (op, arg) in enumerate(steps):
            out += _same(a, b, a.step(op, arg), b.step(op, arg), f"seed {seed} op #{i} {op}")
    assert out > 1000, "the sequences must actually borrow and return"


class FakeAsyncPool(FakePool):
    """The asyncio pool's side: the slow paths are awaitables, as the real pool's are."""

    async def _get(self, timeout: Any) -> Any:
        self.calls.append(("bind",))
        return await self._get_slow(0.0, timeout)

    async def _aget_slow(self, now: float, timeout: Any) -> Any:
        return FakePool._get_slow(self, now, timeout)

    def _get_slow(self, now: float, timeout: Any) -> Any:  # type: ignore[override]
        self.calls.append(("slow",))
        return self._aget_slow(now, timeout)

    async def _admit_or_slow(self, e: Any, now: float, timeout: Any) -> Any:
        if self._admit(e, now, timeout):
            return e
        return FakePool._get_slow(self, now, timeout)

    async def _release(self, e: Any) -> None:  # type: ignore[override]
        FakePool._release(self, e)

    async def _release_block(self, e: Any, ok: bool) -> None:  # type: ignore[override]
        FakePool._release_block(self, e, ok)

    async def _not_lent(self, conn: Any) -> None:  # type: ignore[override]
        FakePool._not_lent(self, conn)


async def _maybe(r: Any) -> Any:
    return await r if isinstance(r, Awaitable) else r


class AsyncSide:
    def __init__(self, build: str, get_mode: str, put_mode: str, admit: bool, max_size: int) -> None:
        mod = load_build(build)
        self.mod = mod
        self.core = new_core(mod, max_size)
        self.pool = FakeAsyncPool(mod, self.core, admit)
        modes = getattr(mod, get_mode), getattr(mod, put_mode)
        self.fast = mod.AsyncFastPath(
            weakref.ref(self.pool), self.core, mod.NoLock(), mod.Gates(), *modes, True
        )
        self.held: list[Any] = []
        self.lent: list[Any] = []

    async def step(self, op: str, arg: float) -> Any:
        f = self.fast
        try:
            if op == "bind":
                f.loop = asyncio.get_running_loop() if arg < 0.9 else None
                return "bound"
            if op == "get":
                e = await _maybe(f.get(None))
                self.held.append(e)
                return ("got", int(e.serial))
            if op == "getconn":
                conn = await f.getconn(None)
                self.lent.append(conn)
                return ("lent", conn)
            if op in ("put", "release_block", "release") and self.held:
                e = self.held.pop(int(arg * len(self.held)) % len(self.held))
                if op == "put":
                    return await _maybe(f.put(e))
                if op == "release_block":
                    return await _maybe(f.release_block(e, arg < 0.5))
                return f.release(e, 0.0)
            if op == "putconn" and self.lent:
                conn = self.lent.pop(int(arg * len(self.lent)) % len(self.lent))
                await f.putconn(conn)
                if arg < 0.2:
                    await f.putconn(conn)
                return "put"
            if op == "borrow":
                async with f.connection(None) as conn:
                    if arg < 0.3:
                        raise KeyError(conn)
                return ("borrowed", conn)
            if op == "reenter":  # one connection() context entered twice: refused, nothing leaks
                cm = f.connection(None)
                async with cm as conn:
                    with pytest.raises(RuntimeError, match="already in use"):
                        await cm.__aenter__()
                return ("reentered", conn)
            return "skip"
        except (TimeoutError, ValueError, KeyError) as exc:
            return _failed(exc)


@lockstep_modes
def test_async_fast_paths_in_lockstep(get_mode: str, put_mode: str, admit: bool) -> None:
    load_build("c")
    ops = ["bind", "get", "getconn", "put", "release_block", "release", "putconn", "borrow", "reenter"]

    async def main() -> int:
        out = 0
        for seed, max_size, steps in _sequences(ops):
            a = AsyncSide("c", get_mode, put_mode, admit, max_size)
            b = AsyncSide("python", get_mode, put_mode, admit, max_size)
            for i, (op, arg) in enumerate(steps):
                ra, rb = await a.step(op, arg), await b.step(op, arg)
                out += _same(a, b, ra, rb, f"seed {seed} op #{i} {op}")
        return out

    assert asyncio.run(main()) > 1000, "the sequences must actually borrow and return"


# -- the psycopg gates, on real connections ------------------------------------------------------
