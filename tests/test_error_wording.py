"""One wording per kind of mistake, naming the option and the class the user called."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

import pytest

import fastpool
from fastpool.asyncpg import create_pool

DSN = "host=127.0.0.1 port=1 dbname=x user=y"  # nothing is opened: every error comes first
CLASSES: dict[str, Callable[..., Any]] = {
    "Pool": lambda **kw: fastpool.Pool(DSN, **kw),
    "AsyncPool": lambda **kw: fastpool.AsyncPool(DSN, **kw),
    "ConnectionPool": lambda **kw: fastpool.ConnectionPool(DSN, open=False, **kw),
    "AsyncConnectionPool": lambda **kw: fastpool.AsyncConnectionPool(DSN, open=False, **kw),
    "ResourcePool": lambda **kw: fastpool.ResourcePool(_Res, **kw),
    "Pool (asyncpg)": lambda **kw: create_pool(DSN, **kw),
}


class _Res(fastpool.BaseResource[None]):
    @classmethod
    def create(cls, ctx: None) -> _Res:
        return cls()


def _owner(label: str) -> str:
    return label.split(" ", maxsplit=1)[0]


@pytest.mark.parametrize("label", CLASSES)
def test_sizes_the_wrong_way_round(label: str) -> None:
    with pytest.raises(
        ValueError, match=rf"^{_owner(label)}: min_size \(5\) cannot be greater than max_size \(2\)$"
    ):
        CLASSES[label](min_size=5, max_size=2)


@pytest.mark.parametrize("label", CLASSES)
def test_a_count_too_small(label: str) -> None:
    with pytest.raises(ValueError, match=rf"^{_owner(label)}: min_size must be at least 0, got -1$"):
        CLASSES[label](min_size=-1, max_size=2)


@pytest.mark.parametrize(
    ("label", "option"),
    [("Pool", "acquire_timeout"), ("AsyncPool", "max_lifetime"), ("ConnectionPool", "timeout"),
     ("Pool (asyncpg)", "max_inactive_connection_lifetime")],
)  # fmt: skip
def test_a_duration_out_of_range(label: str, option: str) -> None:
    zero_ok = option == "max_inactive_connection_lifetime"  # 0: never, as in asyncpg
    bound = "at least 0" if zero_ok else "more than 0"
    with pytest.raises(ValueError, match=rf"^{_owner(label)}: {option} must be {bound} seconds, got -1$"):
        CLASSES[label](**{option: -1})


def test_a_per_call_timeout_names_the_pool_class() -> None:
    with fastpool.ResourcePool(_Res, max_size=1) as pool:
        with pytest.raises(ValueError, match=r"^ResourcePool: timeout must be at least 0 seconds, got -1$"):
            pool.acquire(timeout=-1)


@pytest.mark.parametrize("label", ["Pool", "AsyncPool", "ResourcePool"])
def test_an_unknown_keyword_names_the_class_and_suggests(label: str) -> None:
    with pytest.raises(
        TypeError, match=re.escape(f"{label}() got an unexpected keyword argument 'max_szie'")
    ) as e:
        CLASSES[label](max_szie=3)
    assert "did you mean 'max_size'?" in str(e.value)


def test_pool_options_validates_when_constructed() -> None:
    with pytest.raises(
        TypeError, match=r"^PoolOptions: test_before_acquire must be True or False, got 'no'$"
    ):
        fastpool.PoolOptions(test_before_acquire="no")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^PoolOptions: min_connections \(5\) cannot be greater"):
        fastpool.PoolOptions(min_connections=5, max_connections=2)


def test_a_refused_first_open_says_why_it_waits_at_once(caplog: pytest.LogCaptureFixture) -> None:
    """An eager open against a port nobody listens on keeps trying for fail_fast_after (a server
    starting beside the app is worth waiting for), and says so at the first failure, once."""
    caplog.set_level(logging.WARNING, logger="fastpool")
    with pytest.raises(fastpool.PoolTimeout) as e:
        fastpool.Pool("host=127.0.0.1 port=1 dbname=x user=y password=s3cret", fail_fast_after=1.0)
    failed_at = time.time()
    said = [r for r in caplog.records if "cannot connect to 127.0.0.1:1 yet" in r.getMessage()]
    assert len(said) == 1, caplog.text
    assert "retrying for up to 1 s before the open fails (fail_fast_after)" in said[0].getMessage()
    assert said[0].created < failed_at - 0.5  # said while waiting, not with the failure
    assert "s3cret" not in caplog.text + str(e.value)


def _chain(exc: BaseException | None) -> list[BaseException]:
    out = []
    while exc is not None:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


@pytest.mark.db
@pytest.mark.parametrize("how", ["eager", "acquire", "ConnectionPool"])
def test_no_password_in_the_cause_chain_objects(dsn: str, how: str) -> None:
    """psycopg's connect error carries libpq's connection object, whose repr and ``password``
    attribute hold the password: the errors fastpool chains carry none (``pgconn`` is cut)."""
    bad = f"{dsn} user=fastpool_no_such_role password=s3cret"
    with pytest.raises(fastpool.PoolTimeout) as e:
        if how == "eager":
            fastpool.Pool(bad, acquire_timeout=3)
        elif how == "acquire":
            with fastpool.Pool.connect_lazy(bad) as pool:
                pool.acquire(timeout=2)
        else:
            with fastpool.ConnectionPool(bad, timeout=2) as pool:
                pool.wait(2)
    chain = _chain(e.value)
    assert len(chain) >= 2
    for exc in chain:
        assert getattr(exc, "pgconn", None) is None
        assert "s3cret" not in repr(vars(exc)) + str(exc) + repr(exc)
