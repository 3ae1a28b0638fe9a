"""The borrow paths (``FastPath``) of both core twins, driven in lockstep.

A recording stand-in for the pool receives every call the fast path hands to
Python (``_admit``, ``_get_slow``, ``_release``, ``_release_block``,
``_close_doomed``, ``_not_lent``); random sequences of gets, returns,
getconn/putconn and releases must give the same results, the same calls and the
same core counters on both twins, for every get and put mode that needs no
psycopg connection.
"""

from __future__ import annotations

import random
import weakref
from typing import Any

import pytest

from .conftest import load_twin

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


class Side:
    def __init__(self, twin: str, get_mode: str, put_mode: str, admit: bool, max_size: int) -> None:
        mod = load_twin(twin)
        self.core = mod.PoolCore(max_size, 0)
        self.pool = FakePool(mod, self.core, admit)
        modes = getattr(mod, get_mode), getattr(mod, put_mode)
        self.fast = mod.FastPath(weakref.ref(self.pool), self.core, mod.Lock(), None, *modes, True)
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
            return "skip"
        except (TimeoutError, ValueError) as exc:
            return ("error", type(exc).__name__)


@pytest.mark.parametrize("get_mode", ["GET_PLAIN", "GET_ADMIT"])
@pytest.mark.parametrize("put_mode", ["PUT_PLAIN", "PUT_SLOW"])
@pytest.mark.parametrize("admit", [True, False])
def test_fast_paths_in_lockstep(get_mode: str, put_mode: str, admit: bool) -> None:
    load_twin("c")  # skips when the compiled core is not built (fails when it is required)
    ops = ["get", "getconn", "put", "release_block", "release", "putconn", "take_back_stranger"]
    out = 0
    for seed in range(25):
        rnd = random.Random(seed)
        max_size = rnd.randint(1, 4)
        a = Side("c", get_mode, put_mode, admit, max_size)
        b = Side("python", get_mode, put_mode, admit, max_size)
        for i in range(120):
            op = rnd.choice(ops)
            arg = rnd.random()
            ra, rb = a.step(op, arg), b.step(op, arg)
            assert ra == rb, f"seed {seed} op #{i} {op}: c={ra!r} python={rb!r}"
            assert a.pool.calls == b.pool.calls, f"seed {seed} op #{i} {op}"
            sa, sb = a.core.stats(), b.core.stats()
            assert {k: sa[k] for k in DISCRETE} == {k: sb[k] for k in DISCRETE}, f"seed {seed} op #{i} {op}"
            assert len(a.fast.lent) == len(b.fast.lent) == len(a.lent)
            out += ra != "skip" and not (isinstance(ra, tuple) and ra[0] == "error")
    assert out > 1000, "the sequences must actually borrow and return"
