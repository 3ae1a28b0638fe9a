"""Pool-owned threads: workers that open and close connections, and one timer."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections.abc import Callable
from queue import SimpleQueue
from time import monotonic

__all__ = ["Maintenance"]

logger = logging.getLogger("fastpool")

Job = Callable[[], object]


class Maintenance:
    """``num_workers`` threads running submitted jobs, plus a timer thread.

    ``submit`` only puts on a ``SimpleQueue``: it takes no lock and is safe to
    call from a finalizer (R4).  The threads are daemons and hold no reference
    to the pool while idle, so an abandoned pool can be collected.
    """

    def __init__(self, name: str, num_workers: int) -> None:
        self._name = name
        self._num_workers = num_workers
        self._jobs: SimpleQueue[Job | None] = SimpleQueue()
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, Job]] = []
        self._seq = itertools.count()
        self._threads: list[threading.Thread] = []
        self._stopped = False
        self._started = False

    @property
    def running(self) -> bool:
        """True between ``start`` and ``stop``."""
        return self._started and not self._stopped

    def start(self) -> None:
        """Start the worker threads and the timer thread."""
        if self._started:
            return
        self._started = True
        for i in range(self._num_workers):
            t = threading.Thread(
                target=_work, args=(self._jobs,), name=f"{self._name}-worker-{i}", daemon=True
            )
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._timer, name=f"{self._name}-timer", daemon=True)
        t.start()
        self._threads.append(t)

    def submit(self, job: Job) -> None:
        """Run ``job`` on a worker thread as soon as one is free."""
        self._jobs.put(job)

    def later(self, delay: float, job: Job) -> None:
        """Submit ``job`` after ``delay`` seconds (dropped if stopped first)."""
        with self._cond:
            if self._stopped:
                return
            heapq.heappush(self._heap, (monotonic() + delay, next(self._seq), job))
            self._cond.notify()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop the threads; wait up to ``timeout`` for jobs in progress."""
        with self._cond:
            if self._stopped:
                return
            self._stopped = True
            self._heap.clear()
            self._cond.notify()
        for _ in range(self._num_workers):
            self._jobs.put(None)
        deadline = monotonic() + timeout
        me = threading.current_thread()
        for t in self._threads:
            if t is not me:
                t.join(max(0.0, deadline - monotonic()))

    def _timer(self) -> None:
        cond = self._cond
        heap = self._heap
        with cond:
            while not self._stopped:
                if not heap:
                    cond.wait()
                    continue
                delay = heap[0][0] - monotonic()
                if delay > 0:
                    cond.wait(delay)
                    continue
                _, _, job = heapq.heappop(heap)
                self._jobs.put(job)


def _work(jobs: SimpleQueue[Job | None]) -> None:
    while True:
        job = jobs.get()
        if job is None:
            return
        try:
            job()
        except Exception:  # pragma: no cover - jobs handle their own errors
            logger.exception("fastpool: error in a maintenance job")
        del job
