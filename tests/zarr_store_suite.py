"""zarr's store conformance suite (``zarr.testing.store.StoreTests``) run without an async plugin.

zarr runs the suite with pytest-asyncio; this project has no async pytest plugin, so
``synchronous`` turns each of the suite's coroutine tests into a plain test that runs it on
zarr's own event loop (``zarr.core.sync.sync``, the loop zarr's synchronous API uses), and
``SyncStoreFixtures`` replaces the suite's two async fixtures. Parametrisation and fixture
arguments carry over: the wrapper keeps the test's signature and marks.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from zarr.abc.store import Store
from zarr.core.sync import sync

C = TypeVar("C", bound=type)


def _run_on_zarr_loop(test: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> Any:
        return sync(test(*args, **kwargs))

    return run


def synchronous(cls: C) -> C:
    for name in dir(cls):
        test = getattr(cls, name)
        if name.startswith("test_") and inspect.iscoroutinefunction(test):
            setattr(cls, name, _run_on_zarr_loop(test))
    return cls


class SyncStoreFixtures:
    store_cls: type[Store]

    @pytest.fixture
    def store(self, open_kwargs: dict[str, Any]) -> Iterator[Store]:
        store = sync(self.store_cls.open(**open_kwargs))
        yield store
        store.close()

    @pytest.fixture
    def store_not_open(self, store_kwargs: dict[str, Any]) -> Iterator[Store]:
        store = self.store_cls(**store_kwargs)
        yield store
        store.close()
