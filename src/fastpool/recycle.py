"""Recycling methods for psycopg connections (the methods of deadpool-postgres, and more).

* ``Recycle.FAST`` (default): no I/O at all.  At return the connection is
  reset (rollback if a transaction is open, client-side settings restored);
  at hand-out only status checks and a zero-timeout socket probe run, plus
  the empty-query check when ``test_before_acquire`` and ``verify_after``
  call for it.
* ``Recycle.VERIFIED``: FAST plus an empty query, in autocommit, at every
  hand-out of an idle connection.
* ``Recycle.CLEAN``: at return, one simple-protocol round trip of
  ``Recycle.CLEAN.sql``, which drops what a borrower can leave in the session
  (cursors, role, settings, LISTENs, advisory locks, temp tables, sequence
  state) while keeping prepared statements; notifications already received
  are dropped too.
* ``Recycle.custom(sql)``: at return, run ``sql`` (one simple-protocol round
  trip); when it holds ``DISCARD ALL`` or ``DEALLOCATE ALL``, psycopg's own
  prepared-statement cache is forgotten too.

What carries over with FAST and VERIFIED: anything the borrower did to the
*session* on the server (``SET``, ``SET ROLE``, ``LISTEN``, advisory locks,
temp tables, ``WITH HOLD`` cursors, sequence ``currval``) stays for the next
borrower of the same connection.  Use CLEAN when borrowers are not trusted to
clean up, or when they act for different tenants.  With CLEAN, put session
settings in the connection parameters (``options='-c search_path=...'``):
``RESET ALL`` undoes what ``after_connect`` set with ``SET``.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = ["CLEAN_SQL", "Recycle"]

CLEAN_SQL = (
    "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; "
    "SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES"
)


class Recycle:
    """A recycling method; use ``Recycle.FAST``, ``VERIFIED``, ``CLEAN`` or ``Recycle.custom(sql)``."""

    __slots__ = ("_name", "_query")

    FAST: ClassVar[Recycle]
    VERIFIED: ClassVar[Recycle]
    CLEAN: ClassVar[Recycle]

    def __init__(self, name: str, query: str | None) -> None:
        self._name = name
        self._query = query

    @classmethod
    def custom(cls, sql: str) -> Recycle:
        """Return a method that runs ``sql`` on every returned connection.

        Raises ``ValueError`` (``TypeError`` for a non-str) for an empty query.
        """
        if not isinstance(sql, str):
            raise TypeError(f"recycle: custom SQL must be a str, got {type(sql).__name__}")
        if not sql.strip():
            raise ValueError("recycle: custom SQL cannot be empty")
        return cls("CUSTOM", sql)

    @property
    def name(self) -> str:
        """``"FAST"``, ``"VERIFIED"``, ``"CLEAN"`` or ``"CUSTOM"``."""
        return self._name

    @property
    def query(self) -> str | None:
        """What deadpool's ``query()`` returns: None (FAST), "" (VERIFIED) or the SQL."""
        return self._query

    @property
    def sql(self) -> str | None:
        """The SQL run when a connection is returned (CLEAN and CUSTOM), else None."""
        return self._query or None

    @property
    def verify_on_acquire(self) -> bool:
        """True for VERIFIED: an empty-query round trip at every hand-out from idle."""
        return self._query == ""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Recycle) and (self._name, self._query) == (other._name, other._query)

    def __hash__(self) -> int:
        return hash((self._name, self._query))

    def __repr__(self) -> str:
        if self._name == "CUSTOM":
            return f"Recycle.custom({self._query!r})"
        return f"Recycle.{self._name}"


Recycle.FAST = Recycle("FAST", None)
Recycle.VERIFIED = Recycle("VERIFIED", "")
Recycle.CLEAN = Recycle("CLEAN", CLEAN_SQL)
Recycle.__module__ = "fastpool"
