"""Conditional writes: If-None-Match: * and If-Match are atomic across threads and processes."""

from __future__ import annotations

import asyncio
import multiprocessing
from pathlib import Path

import pytest

from aif_gateway.errors import S3Error
from aif_gateway.store.base import ObjectAttrs, WriteOptions
from aif_gateway.store.fs import FsStore
from aif_gateway.store.meta import SIDECAR, XATTR

from ..store_support import get, new_store, put, run, stream

CREATE_ONLY = WriteOptions(if_none_match=True)


@pytest.fixture(params=[XATTR, SIDECAR])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> FsStore:
    return new_store(tmp_path / "root", request.param)


async def _race(store: FsStore, key: str, bodies: list[bytes], options: list[WriteOptions]) -> list[str]:
    async def attempt(body: bytes, opts: WriteOptions) -> str:
        try:
            await store.put_object("bkt", key, stream(body), ObjectAttrs(), opts)
        except S3Error as exc:
            return exc.code
        return "ok"

    return await asyncio.gather(*(attempt(b, o) for b, o in zip(bodies, options)))


def test_if_none_match_refuses_an_existing_key(store: FsStore) -> None:
    put(store, "k", b"first", options=CREATE_ONLY)
    with pytest.raises(S3Error) as exc:
        put(store, "k", b"second", options=CREATE_ONLY)
    assert exc.value.code == "PreconditionFailed"
    assert get(store, "k") == b"first"


def test_if_none_match_race_between_16_threads_has_one_winner(store: FsStore) -> None:
    bodies = [f"writer {i}".encode() for i in range(16)]
    results = run(_race(store, "race", bodies, [CREATE_ONLY] * 16))
    assert sorted(results) == ["PreconditionFailed"] * 15 + ["ok"]
    assert get(store, "race") == bodies[results.index("ok")]


def _create_only_in_process(root: Path, backend: str, index: int, results: multiprocessing.queues.Queue) -> None:  # type: ignore[name-defined]
    store = FsStore(root, meta_backend=backend)
    try:
        put(store, "race", f"process {index}".encode(), options=CREATE_ONLY)
        results.put((index, "ok"))
    except S3Error as exc:
        results.put((index, exc.code))


def test_if_none_match_race_between_processes_has_one_winner(store: FsStore) -> None:
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_create_only_in_process, args=(store.root, store.meta_backend, i, results)) for i in range(6)
    ]
    for proc in procs:
        proc.start()
    outcomes = dict(results.get(timeout=120) for _ in procs)
    for proc in procs:
        proc.join(timeout=60)
    winners = [i for i, code in outcomes.items() if code == "ok"]
    assert len(winners) == 1
    assert sorted(outcomes.values()) == ["PreconditionFailed"] * 5 + ["ok"]
    assert get(store, "race") == f"process {winners[0]}".encode()


def test_if_match_compares_the_current_etag(store: FsStore) -> None:
    first = put(store, "k", b"v1")
    second = put(store, "k", b"v2", options=WriteOptions(if_match=first.etag))
    with pytest.raises(S3Error) as exc:
        put(store, "k", b"v3", options=WriteOptions(if_match=first.etag))
    assert exc.value.code == "PreconditionFailed"
    assert get(store, "k") == b"v2"
    put(store, "k", b"v4", options=WriteOptions(if_match=second.etag))
    assert get(store, "k") == b"v4"


def test_if_match_on_a_missing_key_is_no_such_key(store: FsStore) -> None:
    for if_match in ("0" * 32, "*"):
        with pytest.raises(S3Error) as exc:
            put(store, "missing", b"x", options=WriteOptions(if_match=if_match))
        assert exc.value.code == "NoSuchKey"


def test_if_match_race_has_one_winner(store: FsStore) -> None:
    base = put(store, "k", b"base")
    bodies = [f"update {i}".encode() for i in range(12)]
    results = run(_race(store, "k", bodies, [WriteOptions(if_match=base.etag)] * 12))
    assert sorted(results) == ["PreconditionFailed"] * 11 + ["ok"]
    assert get(store, "k") == bodies[results.index("ok")]


def test_conditions_apply_to_directory_markers(store: FsStore) -> None:
    put(store, "d/", b"", options=CREATE_ONLY)
    with pytest.raises(S3Error) as exc:
        put(store, "d/", b"", options=CREATE_ONLY)
    assert exc.value.code == "PreconditionFailed"
