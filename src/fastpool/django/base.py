"""The database wrapper of the ``fastpool.django`` backend (see the package docstring)."""

from __future__ import annotations

from typing import Any, ClassVar

from django.core.exceptions import ImproperlyConfigured
from django.db.backends.postgresql import base as _postgresql

from .._compat.psycopg_pool import ConnectionPool

__all__ = ["DatabaseWrapper"]

# Django's own PostgreSQL backend supplies the rest of the backend's modules.
Database = _postgresql.Database


class DatabaseWrapper(_postgresql.DatabaseWrapper):  # type: ignore[misc]  # (Django ships no types)
    """Django's PostgreSQL wrapper, pooling with :class:`fastpool.ConnectionPool`.

    Connections come from the pool when Django opens one and go back to it
    when Django closes one (at the end of each request, since pooling needs
    ``CONN_MAX_AGE = 0``), rolled back if a transaction was left open.
    """

    # The pools of this backend, by database alias (not shared with Django's backend).
    _connection_pools: ClassVar[dict[str, ConnectionPool[Any]]] = {}

    @property
    def pool(self) -> ConnectionPool[Any] | None:
        """The pool of this database alias, or None when ``OPTIONS["pool"]`` is not set."""
        options = self.settings_dict["OPTIONS"].get("pool")
        if self.alias == _postgresql.NO_DB_ALIAS or not options:
            return None
        pools = self._connection_pools
        pool = pools.get(self.alias)
        if pool is not None:
            return pool
        if self.settings_dict.get("CONN_MAX_AGE", 0) != 0:
            raise ImproperlyConfigured(
                "Pooling doesn't support persistent connections (set CONN_MAX_AGE to 0)."
            )
        if options is True:
            options = {}
        elif not isinstance(options, dict):
            raise ImproperlyConfigured(
                f'OPTIONS["pool"] must be True or a dict of pool options, not {type(options).__name__}'
            )
        options = dict(options)
        options.setdefault("name", f"django-{self.alias}")
        kwargs = self.get_connection_params()
        kwargs["autocommit"] = True  # Django sets the mode it wants on each connection it gets
        checks = self.settings_dict["CONN_HEALTH_CHECKS"]
        try:
            pool = ConnectionPool(
                kwargs=kwargs,
                open=False,  # opened at the first connection, not while settings load
                configure=self._configure_connection,
                check=ConnectionPool.check_connection if checks else None,
                **options,
            )
        except TypeError as exc:  # an option name the pool does not know
            raise ImproperlyConfigured(f'OPTIONS["pool"] of database {self.alias!r}: {exc}') from exc
        # Threads may race to build it: the first one stored wins, the others are dropped unopened.
        return pools.setdefault(self.alias, pool)

    def close_pool(self) -> None:
        """Close this alias's pool (idle connections now, borrowed ones when they come back)."""
        pool = self._connection_pools.pop(self.alias, None)
        if pool is not None:
            pool.close()

    def _close(self) -> None:
        conn: Any = getattr(self, "connection", None)
        if conn is None:
            return None
        if self.settings_dict["OPTIONS"].get("pool") and self.alias != _postgresql.NO_DB_ALIAS:
            # Give the connection back to the pool that lent it: after a settings change
            # (USE_TZ, TIME_ZONE) that may be a pool closed since, which closes it instead.
            lender = getattr(conn, "_pool", None)
            with self.wrap_database_errors:
                if isinstance(lender, ConnectionPool):
                    lender.putconn(conn)
                else:  # lent by no pool we know: close it rather than keep a stray session
                    conn.close()
            self.connection = None
            return None
        super()._close()
        return None
