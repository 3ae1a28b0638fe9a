"""What only the threaded pools have: signals in a blocked acquire, ``PoolOptions.connect_resource``."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

import pytest

import fastpool

from .conftest import check_invariants
from .resources import Ctx, Interrupted, Res


def test_interrupt_while_waiting_leaks_nothing(make: Any) -> None:
    # a signal handler raising inside a blocked acquire (the main thread's Ctrl-C)
    pool = make(max_size=1)
    held = pool.acquire()

    def boom(signum: int, frame: Any) -> None:
        raise Interrupted

    old = signal.signal(signal.SIGUSR1, boom)
    try:
        timer = threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGUSR1))
        timer.start()
        with pytest.raises(Interrupted):
            pool.acquire(timeout=5)
        timer.join()
    finally:
        signal.signal(signal.SIGUSR1, old)
    s = check_invariants(pool)
    assert s["waiting"] == 0 and s["cancelled_waits"] == 1
    held.release()
    s = check_invariants(pool)
    assert s["idle"] == 1, "the returned connection was not handed to the interrupted caller"
    with pool.connection(timeout=1):
        pass


def test_pool_options_connect_resource(build: str, ctx: Ctx) -> None:
    opts = fastpool.PoolOptions(max_connections=3, min_connections=2, acquire_timeout=2)
    pool = opts.connect_resource(Res, ctx)
    try:
        assert pool.max_size == 3 and pool.stats()["idle"] == 2
    finally:
        pool.close()
    with pytest.raises(ValueError, match="min_connections"):
        fastpool.PoolOptions(max_connections=1, min_connections=2)
    with pytest.raises(ValueError, match="max_connections"):
        opts.replace(max_connections=0)
    lazy = opts.connect_resource(Res, ctx, lazy=True)
    lazy.close()


def test_the_other_kind_of_connection_class_is_refused(build: str) -> None:
    import psycopg

    with pytest.raises(TypeError, match="connection_class"):
        fastpool.Pool("host=127.0.0.1 port=1 dbname=x user=x", connection_class=psycopg.AsyncConnection)
