"""Differential tests: random operation sequences run on both builds in lockstep.

Every operation's result (projected to serials and waiter ids) and every
stats snapshot must be identical on the two builds, and the invariants must
hold after every step: size <= max_size, nothing handed out twice, a queued
waiter implies no idle entry, counts conserved.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import core_config, load_build


class Side:
    """One build's core plus the test's view of what it handed out."""

    def __init__(self, mod: Any, seed: int, **kw: Any) -> None:
        self.m = mod
        self.core = mod.PoolCore(core_config(**kw), seed)
        self.in_use: list[Any] = []  # entries the "callers" hold, in the order they got them
        self.waiters: list[Any] = []  # every waiter ever queued, by id = index
        self.pending: list[Any] = []  # served waiters whose caller has not woken yet
        self.resized = False

    def pick_wid(self, w: Any) -> int | None:
        if w is None:
            return None
        for i, x in enumerate(self.waiters):
            if x is w:
                return i
        raise AssertionError("unknown waiter returned")

    def take(self, e: Any) -> int:
        assert e.state == self.m.ENTRY_IN_USE
        assert all(x is not e for x in self.in_use), "entry handed out twice"
        self.in_use.append(e)
        return int(e.serial)

    def served(self, w: Any) -> Any:
        if w is not None and w.state == self.m.WAITER_SERVED:
            # the waiter's caller wakes later ("pickup") or times out first ("cancel")
            self.pending.append(w)
            return ("served", self.pick_wid(w), int(w.entry.serial))
        return ("none",) if w is None else ("waiter", self.pick_wid(w), w.state)

    def invariants(self) -> None:
        c = self.core
        s = c.stats()
        assert s["size"] == s["idle"] + s["in_use"] + s["connecting"]
        if not self.resized:  # shrinking max_size leaves the excess in use until returned
            assert s["size"] <= s["max_size"]
        assert s["in_use"] == len(self.in_use) + len(self.pending)
        if s["waiting"] and not c.paused:
            assert s["idle"] == 0
        idle = c.idle_entries()
        assert len(idle) == s["idle"]
        ids = {id(e) for e in idle}
        assert len(ids) == len(idle)
        assert not ids & {id(e) for e in self.in_use}, "an entry is idle and in use at once"
        assert all(e.state == self.m.ENTRY_IDLE for e in idle)


def step(side: Side, op: str, arg: float, now: float) -> Any:
    c = side.core
    if op == "acquire":
        e = c.acquire(now)
        return None if e is None else (side.take(e), bool(e.check_due))
    if op == "enqueue":  # what the pools do under their lock: pop, else queue
        e = c.acquire(now)
        if e is not None:
            return ("popped", side.take(e))
        # a deadline ahead (most alike: in order), or none (a thread times itself out)
        deadline = now + (0.5 if arg < 0.6 else 3.0 if arg < 0.8 else float("inf"))
        w = side.m.Waiter(len(side.waiters), deadline)
        side.waiters.append(w)
        return c.enqueue(w, now)
    if op == "expire":  # the pool's deadline timer fires
        nxt = c.next_deadline()
        return (nxt, [side.pick_wid(w) for w in c.expire(now)], c.next_deadline())
    if op in ("cancel", "cancel_timed_out"):  # a caller gives up (cancelled, or its own timed wait
        # ran out): a queued waiter, or a served one not yet woken
        live = [w for w in side.waiters if w.state == side.m.WAITER_WAITING] + side.pending
        if not live:
            return "skip"
        w = live[int(arg * len(live)) % len(live)]
        if w in side.pending:
            side.pending.remove(w)
        e = c.cancel_wait(w, op == "cancel_timed_out")
        if e is None:
            return None
        side.take(e)  # served meanwhile: the caller keeps it
        return ("got", int(e.serial))
    if op == "pickup":
        if not side.pending:
            return "skip"
        w = side.pending.pop(int(arg * len(side.pending)) % len(side.pending))
        return side.take(w.entry)
    if op == "connect_done":
        if c.connecting <= 0:
            return "skip"
        return side.served(c.connect_done(f"conn@{now}", now))
    if op == "connect_failed":
        if c.connecting <= 0:
            return "skip"
        return c.connect_failed()
    if op in ("release", "discard", "flag", "lock"):
        if not side.in_use:
            return "skip"
        e = side.in_use[int(arg * len(side.in_use)) % len(side.in_use)]
        if op == "flag":
            c.flag(e)
            return None
        if op == "lock":
            e.locks_held += 1
            return None
        side.in_use.remove(e)
        if op == "discard":
            return c.discard(e)
        return side.served(c.release(e, now))
    if op == "fail_waiter":
        return side.served(c.fail_waiter())
    if op == "reap":
        return c.reap(now)
    if op == "plan":
        return c.plan_connects()
    if op == "add":
        return c.add_connects(1 + int(arg * 3))
    if op == "doomed":
        return sorted(int(e.serial) for e in c.take_doomed())
    if op == "evict":
        idle = c.idle_entries()
        chosen = [e for i, e in enumerate(idle) if (i * 7 + int(arg * 100)) % 3 == 0]
        return c.evict(chosen)
    if op == "drain":
        return c.drain(now)
    if op == "drain_spread":
        return c.drain(now, 1.0 + arg * 10)
    if op == "pause":
        c.pause()
        return None
    if op == "resume":
        return [side.served(w) for w in c.resume(now)]
    if op == "observe":
        c.observe_wait(arg * 3)
        c.observe_connect(arg / 100)
        return None
    if op == "close":
        return [side.pick_wid(w) for w in c.close()]
    if op == "resize":
        side.resized = True
        mx = 1 + int(arg * 6)
        c.resize(mx, min(c.min_size, mx))
        return None
    raise AssertionError(op)


OPS = [
    ("acquire", 20),
    ("enqueue", 14),
    ("cancel", 6),
    ("expire", 4),
    ("cancel_timed_out", 2),
    ("pickup", 12),
    ("connect_done", 14),
    ("connect_failed", 3),
    ("release", 18),
    ("discard", 3),
    ("flag", 2),
    ("lock", 1),
    ("fail_waiter", 1),
    ("reap", 3),
    ("plan", 3),
    ("add", 1),
    ("doomed", 3),
    ("evict", 1),
    ("drain", 0.3),
    ("drain_spread", 0.5),
    ("pause", 0.5),
    ("resume", 1),
    ("observe", 1),
    ("close", 0.2),
    ("resize", 0.5),
]


def run_lockstep(seed: int, n_ops: int = 250) -> None:
    rnd = random.Random(seed)
    kw = {
        "max_size": rnd.randint(1, 6),
        "max_lifetime": rnd.choice([None, 5.0, 50.0]),
        "idle_timeout": rnd.choice([None, 2.0, 20.0]),
        "verify_after": rnd.choice([None, 0.0, 1.0]),
        "lifo": rnd.random() < 0.5,
        "max_waiting": rnd.choice([0, 0, 3]),
        "max_uses": rnd.choice([0, 0, 3, 20]),
    }
    kw["min_size"] = rnd.randint(0, kw["max_size"])
    seed = rnd.getrandbits(64)
    a = Side(load_build("c"), seed, **kw)
    b = Side(load_build("python"), seed, **kw)
    names = [o for o, _ in OPS]
    weights = [w for _, w in OPS]
    now = 0.0
    for i in range(n_ops):
        now += rnd.choice([0.0, 0.01, 0.3, 1.0, 7.0])
        op = rnd.choices(names, weights)[0]
        arg = rnd.random()
        ra = step(a, op, arg, now)
        rb = step(b, op, arg, now)
        assert ra == rb, f"seed {seed} op #{i} {op}: c={ra!r} python={rb!r}"
        assert a.core.stats() == b.core.stats(), f"seed {seed} op #{i} {op}"
        assert a.core.histograms() == b.core.histograms(), f"seed {seed} op #{i} {op}"
        assert a.core.paused == b.core.paused
        a.invariants()
        b.invariants()


@pytest.mark.parametrize("block", range(8))
def test_seeded_sequences(block: int) -> None:
    for seed in range(block * 40, block * 40 + 40):
        run_lockstep(seed)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=0, max_value=2**63))
def test_hypothesis_sequences(seed: int) -> None:
    run_lockstep(seed, n_ops=120)
