"""Connection metadata given to the pool hooks."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ConnectionMetadata"]


@dataclass(frozen=True, slots=True)
class ConnectionMetadata:
    """How old a pooled connection is and how long it sat idle, in seconds (monotonic).

    ``after_connect`` sees ``(0, 0)``; ``before_acquire`` sees the idle time
    of the connection it is about to hand out; ``after_release`` sees
    ``idle_for == 0``.
    """

    age: float
    idle_for: float


META_NEW = ConnectionMetadata(0.0, 0.0)
