"""Advisory-lock keys: stable across processes, equal to the SQL, checked with clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

import fastpool
from fastpool import LeadershipLost, LeadershipNotAcquired, advisory_key
from fastpool._surfaces.advisory import normalize_key


def test_advisory_key_is_stable_across_processes() -> None:
    code = "import fastpool; print(fastpool.advisory_key('orders'))"
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2", "random")
    }
    assert outs == {str(advisory_key("orders"))}


@pytest.mark.db
def test_advisory_key_matches_sql(admin: Any) -> None:
    sql = "SELECT ('x' || substr(encode(sha256(convert_to(%s, 'UTF8')), 'hex'), 1, 16))::bit(64)::bigint"
    for name in ("orders", "ünïcode", "a" * 100):
        assert admin.execute(sql, (name,)).fetchone() == (advisory_key(name),)


def test_bad_keys_name_the_key() -> None:
    with pytest.raises(ValueError, match="key"):
        advisory_key("")
    with pytest.raises(ValueError, match="key"):
        normalize_key(1 << 63)
    with pytest.raises(ValueError, match="key"):
        normalize_key((1, 1 << 31))
    with pytest.raises(TypeError, match="key"):
        normalize_key(1.5)
    with pytest.raises(TypeError, match="key"):
        normalize_key(True)


def test_errors_are_fastpool_errors() -> None:
    assert issubclass(LeadershipNotAcquired, fastpool.Error) and issubclass(LeadershipLost, fastpool.Error)
