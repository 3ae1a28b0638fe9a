"""A WSGI app for the gunicorn ``--preload`` test: one module-level pool, made before the fork.

The master process imports this module (``--preload``): the pool opens its
connections there, and the master writes its pid and backend pids to
``$FASTPOOL_GUNICORN_OUT``.  Each request runs a query whose answer carries a
nonce from the query string, and says which worker and backend answered.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any

import fastpool

pool = fastpool.Pool(os.environ["FASTPOOL_GUNICORN_DSN"], min_size=2, max_size=2)
with pool.connection() as _c1, pool.connection() as _c2:
    _master = {"master": os.getpid(), "backends": [_c1.info.backend_pid, _c2.info.backend_pid]}
with open(os.environ["FASTPOOL_GUNICORN_OUT"], "w") as _f:
    json.dump(_master, _f)


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    nonce = environ.get("QUERY_STRING", "")
    body: dict[str, Any] = {"worker": os.getpid()}
    try:
        with pool.connection() as conn:
            row = conn.execute("SELECT %s::text, pg_backend_pid()", (nonce,)).fetchone()
        assert row is not None
        body["backend"] = row[1]
        body["ok"] = row[0] == nonce
    except Exception as exc:
        body["error"] = repr(exc)
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]
