"""Load shedding (``queue_target``): CoDel's test of a standing queue, on the waits callers see."""

from __future__ import annotations

from math import inf as INF

__all__ = ["Shedder"]


class Shedder:
    """Says when a pool is overloaded: every wait of the last ``interval`` was above ``target``.

    While it is, callers wait at most twice ``target`` and are then shed
    (``TooManyRequests``) instead of waiting out their whole timeout.  ``hits``
    arguments are the core's count of hand-outs that did not wait: a hit in an
    interval means the queue drained, so that interval is not overloaded.
    """

    __slots__ = ("_hits", "_min", "_next", "_slow", "interval", "target")

    def __init__(self, target: float, interval: float) -> None:
        self.target = target
        self.interval = interval
        self._next = 0.0  # the end of the current interval
        self._min = INF  # the least wait seen in it
        self._hits = 0  # the core's hits when it began
        self._slow = False  # the last interval's least wait was above target

    def _roll(self, now: float, hits: int) -> None:
        if now < self._next:
            return
        stale = now >= self._next + self.interval  # a whole interval went by unseen
        self._slow = not stale and self._min != INF and self._min > self.target and hits == self._hits
        self._min = INF
        self._hits = hits
        self._next = now + self.interval

    def observe(self, start: float, waited: float, hits: int) -> None:
        """Book a served caller's wait (started at ``start``)."""
        self._roll(start, hits)
        self._min = min(self._min, waited)

    def shedding(self, now: float, hits: int) -> bool:
        """Is the pool overloaded now?"""
        self._roll(now, hits)
        return self._slow
