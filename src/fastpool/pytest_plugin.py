"""pytest plugin: each test in its own rolled-back transaction (registered as ``fastpool``).

Define a ``fastpool_pool`` fixture returning your :class:`fastpool.Pool` (any
scope), point the code under test at ``fastpool.Sandbox.for_pool(pool)``
instead of the pool, and ask for ``fastpool_sandbox`` in a test::

    @pytest.fixture(scope="session")
    def fastpool_pool():
        with fastpool.Pool(DSN) as pool:
            yield pool

    def test_signup(fastpool_sandbox):
        with fastpool_sandbox.connection() as conn:
            ...                                    # rolled back when the test ends

``fastpool_sandbox`` yields the test's :class:`~fastpool.OwnerHandle`: the
test, its child tasks, ``asyncio.to_thread`` and anything run through
``propagate`` use its connection; ``owner.token()`` lets an app under test in
another thread join it (see ``fastpool.sandbox.wsgi_middleware``).
``fastpool_sandbox_shared`` puts the pool in shared mode instead, so any
thread can use the test's connection: do not run such tests concurrently.
The async forms (``fastpool_async_sandbox``, ``fastpool_async_sandbox_shared``)
need pytest-asyncio and a ``fastpool_async_pool`` fixture on the test's loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from .ownership import AsyncOwnerHandle, OwnerHandle
from .sandbox import AsyncSandbox, Sandbox

__all__ = [
    "fastpool_async_pool",
    "fastpool_async_sandbox",
    "fastpool_async_sandbox_shared",
    "fastpool_pool",
    "fastpool_sandbox",
    "fastpool_sandbox_shared",
]


@pytest.fixture
def fastpool_pool() -> Any:
    """Override this fixture: it must return the ``fastpool.Pool`` the sandboxes come from."""
    pytest.fail("fastpool_sandbox needs a `fastpool_pool` fixture returning your fastpool.Pool "
                "(define it in conftest.py, any scope)", pytrace=False)  # fmt: skip


@pytest.fixture
def fastpool_async_pool() -> Any:
    """Override this fixture: it must return the ``fastpool.AsyncPool`` for the async sandboxes."""
    pytest.fail("fastpool_async_sandbox needs a `fastpool_async_pool` fixture returning your "
                "fastpool.AsyncPool, on the test's event loop", pytrace=False)  # fmt: skip


@pytest.fixture
def fastpool_sandbox(fastpool_pool: Any) -> Iterator[OwnerHandle]:
    """The test's owner of a sandbox transaction, rolled back at teardown."""
    with Sandbox.for_pool(fastpool_pool).start_owner(name="pytest") as owner:
        yield owner


@pytest.fixture
def fastpool_sandbox_shared(fastpool_pool: Any) -> Iterator[OwnerHandle]:
    """Like ``fastpool_sandbox``, in shared mode: every thread uses the test's connection."""
    with Sandbox.for_pool(fastpool_pool).start_owner(shared=True, name="pytest-shared") as owner:
        yield owner


try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - the async fixtures need pytest-asyncio
    pass
else:

    @pytest_asyncio.fixture
    async def fastpool_async_sandbox(fastpool_async_pool: Any) -> AsyncIterator[AsyncOwnerHandle]:
        """The async test's owner of a sandbox transaction (an owner handle, not the fixture's task)."""
        async with AsyncSandbox.for_pool(fastpool_async_pool).start_owner(name="pytest") as owner:
            yield owner

    @pytest_asyncio.fixture
    async def fastpool_async_sandbox_shared(fastpool_async_pool: Any) -> AsyncIterator[AsyncOwnerHandle]:
        """Like ``fastpool_async_sandbox``, in shared mode (for stacks that lose fixture context)."""
        sb = AsyncSandbox.for_pool(fastpool_async_pool)
        async with sb.start_owner(shared=True, name="pytest-shared") as owner:
            yield owner
