"""Leak tracking (``leak_timeout``): who took each connection, and a warning when one is held too long."""

from __future__ import annotations

import linecache
import logging
import os
import sys
from time import monotonic
from typing import Any

__all__ = ["LeakTracker"]

_log = logging.getLogger("fastpool")  # leak reports, whichever logger the pool's other messages use
_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # fastpool's own frames


class LeakTracker:
    """Remembers the caller's stack at every hand-out and reports connections held past a limit.

    :meth:`note_lent` runs at every hand-out (the borrow path calls it as its
    ``on_lend``), so it only keeps (code, line) pairs; :meth:`scan`, run by the
    reaper, logs a WARNING with the stack once per leaked connection, counts
    it, and logs again when that connection comes back.
    """

    __slots__ = ("_in_use", "_stacks", "count", "limit", "name")

    def __init__(self, name: str, limit: float, in_use_state: int) -> None:
        self.name = name
        self.limit = limit
        self.count = 0  # connections reported as leaked
        self._in_use = in_use_state  # the core's ENTRY_IN_USE
        self._stacks: dict[int, list[Any]] = {}  # id(entry) -> [entry, lent_at, stack, warned]

    def note_lent(self, e: Any) -> None:
        """Remember who took ``e``: the caller's frames, fastpool's own left out."""
        stack = _caller_frames()
        old = self._stacks.get(id(e))
        if old is not None and old[0] is e and old[1] != e.lent_at and old[3]:
            self._back(old, monotonic())
        self._stacks[id(e)] = [e, e.lent_at, stack, False]

    def _back(self, rec: list[Any], now: float) -> None:
        e, lent_at = rec[0], rec[1]
        back = e.last_used if e.last_used >= lent_at else now
        _log.warning(
            "%s: the connection reported as leaked was given back after %.3g s", self.name, back - lent_at
        )

    def scan(self, now: float) -> None:
        """Warn once about each connection held past the limit; say when a reported one came back."""
        stacks = self._stacks
        for key, rec in list(stacks.items()):
            e, lent_at, stack, warned = rec
            if e.state != self._in_use or e.lent_at != lent_at:  # back (or closed) since
                if stacks.get(key) is rec:
                    del stacks[key]
                if warned:
                    self._back(rec, now)
            elif not warned and now - lent_at > self.limit:
                rec[3] = True
                _log.warning(
                    "%s: a connection has been held for %.3g s (leak_timeout %g s); it was acquired at:\n%s",
                    self.name,
                    now - lent_at,
                    self.limit,
                    _format_frames(stack),
                )
                self.count += 1  # counted once the report is out (a test may wait for either)


def _caller_frames(limit: int = 48) -> list[tuple[Any, int]]:
    """The calling code's frames as (code, line) pairs, innermost first, fastpool's own left out.

    Cheap on purpose (no source lines read, no objects per frame but a tuple): it runs at
    every hand-out while ``leak_timeout`` is set; :func:`_format_frames` does the rest, once.
    """
    out: list[tuple[Any, int]] = []
    f: Any = sys._getframe(1)
    while f is not None and len(out) < limit:
        code = f.f_code
        if not code.co_filename.startswith(_PKG_DIR):
            out.append((code, f.f_lineno))
        f = f.f_back
    return out


def _format_frames(frames: list[tuple[Any, int]]) -> str:
    """Frames from :func:`_caller_frames` as a traceback's lines, outermost first."""
    lines = []
    for code, lineno in reversed(frames):
        lines.append(f'  File "{code.co_filename}", line {lineno}, in {code.co_name}')
        src = linecache.getline(code.co_filename, lineno).strip()
        if src:
            lines.append(f"    {src}")
    return "\n".join(lines)
