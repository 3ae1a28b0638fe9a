"""What every PostgreSQL driver shares, whatever the client library: no I/O here.

* **Secrets**: every password a driver is given (in a URL, a ``key=value``
  conninfo, a ``password`` keyword, or what a conninfo function returns) is
  remembered and scrubbed from every text the pool logs or raises, and from
  every error it chains as a cause (:meth:`PostgresDriver.redact`,
  :meth:`PostgresDriver.safe_error`).  Patterns find passwords in conninfo
  strings the client library could not even parse.
* **Where**: the ``host:port`` of each server a conninfo names, for messages.
* **The role the pool wants** (``target_session_attrs``): checked by the
  client library when it connects, and by the pool afterwards, because a
  primary can become a standby (failover) while the pool holds connections.
* **Recycling** (:class:`fastpool.Recycle`), ``transaction_pooling``, and the
  socket: a forked child forgets it, and a phase past its deadline shuts it.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import unquote

from .._acompat import maybe_await
from .._settings import session_needed
from ..errors import PoolTimeout
from ..recycle import Recycle
from .base import Driver

__all__ = [
    "ROLE_CODES",
    "PostgresDriver",
    "conninfo_secrets",
    "endpoints",
    "role_problem",
    "scrub",
    "session_attrs",
]

# target_session_attrs values libpq knows; those the pool checks after connecting (the gates' ROLE_*)
SESSION_ATTRS = ("any", "read-write", "read-only", "primary", "standby", "prefer-standby")
ROLE_CODES = {"read-write": 1, "primary": 2, "read-only": 3, "standby": 4}
_MAX_SECRETS = 16  # passwords remembered for scrubbing when a conninfo function rotates them

# where a password can stand in a conninfo or in a message quoting one
_URI_USERINFO = re.compile(r"(?P<pre>\b[a-z][a-z0-9+.-]*://[^:/?#@\s\"']*:)(?P<pw>[^@/?#\s\"']*)(?=@)", re.I)
_URI_PARAM = re.compile(r"(?P<pre>[?&]password=)(?P<pw>[^&#\s\"']*)", re.I)
_KEYWORD = re.compile(r"(?P<pre>(?<![?&])\bpassword\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'?|[^\s'\"]+)", re.I)
_PATTERNS = (_URI_USERINFO, _URI_PARAM, _KEYWORD)


def endpoints(params: Mapping[str, Any]) -> str:
    """``host:port`` for each server a conninfo names, comma-separated (libpq pairs the lists)."""
    hosts = str(params.get("host") or params.get("hostaddr") or "").split(",")
    ports = str(params.get("port") or "5432").split(",")
    if len(ports) == 1:
        ports = ports * len(hosts)
    out = []
    for i, host in enumerate(hosts):
        port = ports[i] if i < len(ports) else ports[-1]
        port = port or "5432"
        if not host or host.startswith("/") or host.startswith("@"):
            out.append(f"local socket (port {port})")
        else:
            out.append(f"{host}:{port}")
    return ",".join(out)


def session_attrs(params: Mapping[str, Any]) -> str | None:
    """The ``target_session_attrs`` the pool must keep checking (None: any server will do).

    ``ValueError`` names the option for a value libpq would refuse.
    """
    value = params.get("target_session_attrs") or os.environ.get("PGTARGETSESSIONATTRS") or "any"
    if value not in SESSION_ATTRS:
        raise ValueError(f"target_session_attrs must be one of {', '.join(SESSION_ATTRS)}; got {value!r}")
    return str(value) if value in ROLE_CODES else None


def role_problem(hot: bool, target: str) -> str:
    """What a server that reports ``in_hot_standby`` = ``hot`` is, in ``target``'s terms (messages)."""
    if target in {"primary", "standby"}:
        return "a standby (in_hot_standby=on)" if hot else "a primary (in_hot_standby=off)"
    if target == "read-only":
        return "writable (in_hot_standby=off, default_transaction_read_only=off)"
    return f"read-only ({'in_hot_standby=on' if hot else 'default_transaction_read_only=on'})"


def conninfo_secrets(conninfo: str, kwargs: Mapping[str, Any]) -> list[str]:
    """Every form the password takes in ``conninfo`` and ``kwargs`` (raw, unquoted, decoded), longest first.

    Found by patterns, so that a conninfo no library can parse still has its password hidden.
    """
    found: set[str] = set()
    if kwargs.get("password") and isinstance(kwargs["password"], str):
        found.add(kwargs["password"])
    for pattern in _PATTERNS:
        for m in pattern.finditer(conninfo):
            pw = m.group("pw")
            if not pw:
                continue
            found.add(pw)
            if pw.startswith("'"):
                found.add(pw.strip("'").replace("\\'", "'").replace("\\\\", "\\"))
            try:
                found.add(unquote(pw, errors="strict"))
            except UnicodeDecodeError:
                pass
    return sorted((s for s in found if s), key=len, reverse=True)


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` with every password hidden: the known ones, and any a conninfo in it carries."""
    for secret in secrets:
        text = text.replace(secret, "***")
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: f"{m.group('pre')}***" if m.group("pw") else m.group(0), text)
    return text


class PostgresDriver(Driver):
    """The base of the PostgreSQL drivers (see the module docstring); a driver adds its
    client library's connect, checks, resets, gates and error classification."""

    #: the client library's error for a failed connect (what ``params_error`` raises)
    connect_error_class: ClassVar[type[Exception]] = ConnectionError

    def __init__(self, conninfo: Any, kwargs: Any, recycle: Recycle, transaction_pooling: bool) -> None:
        if not (isinstance(conninfo, str) or callable(conninfo)):
            raise TypeError(
                f"conninfo must be a str or a function returning one, got {type(conninfo).__name__}"
            )
        if not (kwargs is None or isinstance(kwargs, Mapping) or callable(kwargs)):
            raise TypeError(
                "kwargs must be a mapping of connection parameters or a function returning one, "
                f"got {type(kwargs).__name__}"
            )
        if not isinstance(recycle, Recycle):
            raise TypeError(f"recycle must be a fastpool.Recycle, got {type(recycle).__name__}")
        if not isinstance(transaction_pooling, bool):
            raise TypeError(f"transaction_pooling must be True or False, got {transaction_pooling!r}")
        if transaction_pooling and recycle.sql is not None:
            raise ValueError(
                session_needed(f"recycle={recycle!r}", "it resets the session at every return", "this pool")
            )
        self.transaction_pooling = transaction_pooling
        self.recycle = recycle
        self.always_check = recycle.verify_on_acquire
        self._recycle_sql = recycle.sql
        self._clean = recycle == Recycle.CLEAN
        self.return_gate = self._recycle_sql is None  # the borrow path may idle an unchanged connection
        self._secrets: list[str] = []
        self._target = ""
        self.target_session_attrs: str | None = None
        self._role = 0  # the gates' ROLE_* for target_session_attrs
        #: what the pool was given: either may be a function, called for each new connection
        self.conninfo_source = conninfo
        self.kwargs_source = kwargs
        self.dynamic = callable(conninfo) or callable(kwargs)

    # -- what the connection parameters say ---------------------------------------------------

    def learn(self, secrets: list[str], params: Mapping[str, Any]) -> None:
        """Remember the passwords of a set of connection parameters (for scrubbing), the role
        they target and the servers they name (for messages)."""
        if params.get("password") and isinstance(params["password"], str):
            secrets = [*secrets, params["password"]]
        if secrets:  # rotating credentials: remember the latest few, whatever old messages quote
            known = [s for s in self._secrets if s not in secrets][: _MAX_SECRETS - len(secrets)]
            self._secrets = sorted({*secrets, *known}, key=len, reverse=True)
        self.target_session_attrs = session_attrs(params)
        self._role = ROLE_CODES.get(self.target_session_attrs or "", 0)
        self._target = endpoints(params)

    def check_returned(self, conninfo: Any, kwargs: Any) -> None:
        """What a conninfo or kwargs function returned must be a str and a mapping."""
        if not isinstance(conninfo, str):
            raise TypeError(f"the conninfo function must return a str, got {type(conninfo).__name__}")
        if kwargs is not None and not isinstance(kwargs, Mapping):
            raise TypeError(f"the kwargs function must return a mapping, got {type(kwargs).__name__}")

    def resolve(self, conninfo: Any, kwargs: Any) -> tuple[Any, dict[str, Any]]:
        """The driver's connection parameters for ``conninfo`` and ``kwargs`` (checked)."""
        raise NotImplementedError

    def _params(self) -> tuple[Any, dict[str, Any]]:
        """Call the conninfo and kwargs functions (for a new connection) and check what they give."""
        conninfo, kwargs = self.conninfo_source, self.kwargs_source
        try:
            if callable(conninfo):
                conninfo = conninfo()
            if callable(kwargs):
                kwargs = kwargs()
        except Exception as exc:
            raise self.params_error(exc) from None
        return self.resolve(conninfo, kwargs)

    async def _params_async(self) -> tuple[Any, dict[str, Any]]:
        """:meth:`_params` for the asyncio pools: the functions may be coroutine functions."""
        conninfo, kwargs = self.conninfo_source, self.kwargs_source
        try:
            if callable(conninfo):
                conninfo = await maybe_await(conninfo())
            if callable(kwargs):
                kwargs = await maybe_await(kwargs())
        except Exception as exc:
            raise self.params_error(exc) from None
        return self.resolve(conninfo, kwargs)

    def role_error(self, conn: Any) -> Exception | None:
        """The error to give when ``conn``'s server no longer matches ``target_session_attrs``
        (as the server last reported it, no I/O); None while it matches."""
        raise NotImplementedError

    def role_changed(self, conn: Any) -> bool:
        """True (and logged) when ``conn``'s server no longer matches ``target_session_attrs``."""
        err = self.role_error(conn)
        if err is None:
            return False
        self.log.warning("closing a returned connection: %s", err)
        return True

    def params_error(self, exc: BaseException) -> Exception:
        """The error of a conninfo or kwargs function that raised: a failed connect, retried."""
        err = self.connect_error_class(
            f"the conninfo or kwargs function raised {type(exc).__name__}: {self.redact(str(exc))}"
        )
        err.__cause__ = self.safe_error(exc)
        return err

    # -- errors and secrets ------------------------------------------------------------------------

    def connect_error(self, exc: BaseException) -> BaseException:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        err = PoolTimeout(f"couldn't connect to {self._target}: {self.redact(first)}")
        err.__cause__ = self.safe_error(exc)
        return err

    def safe_error(self, exc: BaseException | None) -> BaseException | None:
        if exc is None:
            return None
        text = str(exc)
        clean = self.redact(text)
        # psycopg's error keeps libpq's connection object (``pgconn``), whose repr and ``password``
        # hold the password: a copy without it is chained, as for a message with a secret in it
        if clean == text and getattr(exc, "pgconn", None) is None:
            return exc
        try:
            safe = type(exc)(clean)
        except Exception:
            safe = self.connect_error_class(clean)
        safe.__cause__ = self.safe_error(exc.__cause__)
        return safe

    def describe(self) -> str:
        return self._target

    def redact(self, text: str) -> str:
        return scrub(text, self._secrets)

    # -- the socket ------------------------------------------------------------------------------

    def socket_fd(self, conn: Any) -> int:
        """The connection's socket descriptor (``OSError`` or any error once it is closed)."""
        raise NotImplementedError

    def forget(self, conn: Any) -> None:
        """Point the child's copy of the socket at ``/dev/null``: the parent's session is untouched,
        and whatever the child's copy of the connection sends (a Terminate when collected) goes nowhere."""
        try:
            fd = self.socket_fd(conn)
        except Exception:  # closed already
            return
        null = os.open(os.devnull, os.O_RDWR)
        try:
            os.dup2(null, fd)
        finally:
            os.close(null)

    def interrupt(self, conn: Any) -> bool:
        """Shut the connection's socket down: blocked I/O on it fails at once, and nothing
        (no cancel request, no Terminate message) is sent on a path that is known to be stuck."""
        try:
            fd = self.socket_fd(conn)
        except Exception:  # closed already: nothing is in progress
            return True
        try:
            s = socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM)  # a duplicate descriptor
        except OSError:
            return True
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        finally:
            s.close()
        return True
