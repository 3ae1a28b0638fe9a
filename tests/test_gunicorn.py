"""A real ``gunicorn --preload`` app: 4 workers share a pool created before the fork.

Every worker's backends must be its own (disjoint from the other workers' and
from the master's), and no answer may carry another request's nonce.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from .conftest import free_port, unavailable

pytestmark = [pytest.mark.db, pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork()")]

ROOT = Path(__file__).resolve().parent.parent


def test_gunicorn_preload_workers_use_their_own_connections(dsn: str, admin: Any) -> None:
    try:
        import gunicorn  # noqa: F401
    except ImportError:
        unavailable("gunicorn is not installed (the test extra installs it)")
    port = free_port()
    app_name = f"fastpool-gunicorn-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "master.json")
        env = {
            **os.environ,
            "FASTPOOL_GUNICORN_DSN": f"{dsn} application_name={app_name}",
            "FASTPOOL_GUNICORN_OUT": out,
            "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        }
        cmd = [sys.executable, "-m", "gunicorn", "--preload", "-w", "4", "-b", f"127.0.0.1:{port}",
               "--log-level", "warning", "tests.gunicorn_app:app"]  # fmt: skip
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        break
                except OSError:
                    assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                    assert time.monotonic() < deadline, "gunicorn did not start"
                    time.sleep(0.1)

            def call(i: int) -> dict[str, Any]:
                nonce = f"n{i}-{uuid.uuid4().hex[:6]}"
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/?{nonce}", timeout=30) as r:
                    body: dict[str, Any] = json.loads(r.read())
                body["sent"] = nonce
                return body

            with ThreadPoolExecutor(max_workers=16) as ex:
                answers = list(ex.map(call, range(400)))
            with open(out) as f:
                master = json.load(f)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:  # pragma: no cover
                proc.kill()
    errors = [a for a in answers if "error" in a or not a.get("ok")]
    assert not errors, errors[:5]
    by_worker: dict[int, set[int]] = {}
    for a in answers:
        by_worker.setdefault(a["worker"], set()).add(a["backend"])
    assert master["master"] not in by_worker
    assert len(by_worker) >= 2, "the requests spread over several workers"
    seen = set(master["backends"])
    for backends in by_worker.values():
        assert not backends & seen, "a worker used a connection of the master or of another worker"
        seen |= backends
    print(
        f"\ngunicorn --preload: {len(answers)} requests over {len(by_worker)} workers, 0 errors; "
        f"backends per worker {sorted(len(b) for b in by_worker.values())}, all disjoint "
        f"and apart from the master's {len(master['backends'])}"
    )
