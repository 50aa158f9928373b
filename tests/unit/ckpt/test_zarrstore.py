"""``AifZarrStore``: zarr's own store conformance suite over a plain directory and a gateway bucket
tree, and its byte ranges against zarr's ``LocalStore`` on the same files."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from zarr.abc.store import OffsetByteRequest, RangeByteRequest, SuffixByteRequest
from zarr.core.buffer import Buffer, cpu, default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import LocalStore
from zarr.testing.store import StoreTests
from zarr_store_suite import SyncStoreFixtures, synchronous

from aif_gateway.ckpt.targets import DirectoryTarget
from aif_gateway.ckpt.zarrstore import AifZarrStore

PROTO = default_buffer_prototype()


@synchronous
class TestAifZarrStoreOverPath(SyncStoreFixtures, StoreTests[AifZarrStore, cpu.Buffer]):
    store_cls = AifZarrStore
    buffer_cls = cpu.Buffer

    @pytest.fixture
    def store_kwargs(self, tmp_path: Path) -> dict[str, Any]:
        return {"target": str(tmp_path / "ckpt")}

    def _file(self, store: AifZarrStore, key: str) -> Path:
        return Path(store._dest) / key

    async def set(self, store: AifZarrStore, key: str, value: Buffer) -> None:
        path = self._file(store, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(value.to_bytes())

    async def get(self, store: AifZarrStore, key: str) -> Buffer:
        return self.buffer_cls.from_bytes(self._file(store, key).read_bytes())

    def test_store_repr(self, store: AifZarrStore) -> None:
        assert repr(store) == f"AifZarrStore('aif-filesystem://{store._dest}')"

    def test_store_supports_writes(self, store: AifZarrStore) -> None:
        assert store.supports_writes

    def test_store_supports_listing(self, store: AifZarrStore) -> None:
        assert store.supports_listing


@synchronous
class TestAifZarrStoreOverBucketTree(TestAifZarrStoreOverPath):
    """The same suite through a ``BucketTarget``: files published as the gateway's objects."""

    @pytest.fixture
    def store_kwargs(self, tmp_path: Path) -> dict[str, Any]:
        (tmp_path / "root" / "bkt").mkdir(parents=True)
        return {"target": "s3://bkt/ckpt", "root": str(tmp_path / "root")}

    def _file(self, store: AifZarrStore, key: str) -> Path:
        return Path(store._options.root) / "bkt" / "ckpt" / key

    def test_store_repr(self, store: AifZarrStore) -> None:
        assert repr(store).startswith("AifZarrStore('aif-filesystem://") and "bucket bkt" in repr(store)

    def test_writes_are_gateway_objects(self, store: AifZarrStore) -> None:
        sync(store.set("a/zarr.json", cpu.Buffer.from_bytes(b"{}")))
        assert store.target.kind == "filesystem" and type(store.target).__name__ == "BucketTarget"
        assert self._file(store, "a/zarr.json").read_bytes() == b"{}"


# -- byte ranges: the same answers as zarr's LocalStore on the same files ---------------------------
class CountingDirectoryTarget(DirectoryTarget):
    """A ``DirectoryTarget`` that counts whole-file reads."""

    whole_reads = 0

    def read_bytes(self, name: str) -> bytes:
        self.whole_reads += 1
        return super().read_bytes(name)


RANGES = [
    None,
    RangeByteRequest(0, 5),
    RangeByteRequest(3, 9),
    RangeByteRequest(7, 7),
    RangeByteRequest(8, 40),
    RangeByteRequest(10, 20),
    RangeByteRequest(50, 60),
    OffsetByteRequest(0),
    OffsetByteRequest(4),
    OffsetByteRequest(10),
    OffsetByteRequest(30),
    SuffixByteRequest(0),
    SuffixByteRequest(3),
    SuffixByteRequest(10),
    SuffixByteRequest(25),
]


@pytest.fixture
def files(tmp_path: Path) -> Path:
    root = tmp_path / "files"
    (root / "d").mkdir(parents=True)
    (root / "ten").write_bytes(bytes(range(10)))
    (root / "d" / "empty").write_bytes(b"")
    return root


@pytest.fixture
def target(files: Path) -> Iterator[DirectoryTarget]:
    target = DirectoryTarget(files)
    yield target
    target.close()


@pytest.mark.parametrize("key", ["ten", "d/empty", "missing", "d"])
def test_ranges_match_local_store(files: Path, target: DirectoryTarget, key: str) -> None:
    ours, reference = AifZarrStore(target, read_only=True), LocalStore(files, read_only=True)
    for rng in RANGES:
        want = sync(reference.get(key, PROTO, rng))
        got = sync(ours.get(key, PROTO, rng))
        assert (got is None) == (want is None), (key, rng)
        if want is not None:
            assert got.to_bytes() == want.to_bytes(), (key, rng)


def test_suffixes_are_read_without_reading_the_whole_file(files: Path) -> None:
    target = CountingDirectoryTarget(files)
    store = AifZarrStore(target)
    assert sync(store.get("ten", PROTO, SuffixByteRequest(3))).to_bytes() == bytes([7, 8, 9])
    assert sync(store.get("ten", PROTO, OffsetByteRequest(8))).to_bytes() == bytes([8, 9])
    assert sync(store.getsize("ten")) == 10
    assert target.whole_reads == 0
    target.close()


def test_bad_ranges_are_refused(target: DirectoryTarget) -> None:
    store = AifZarrStore(target)
    with pytest.raises(ValueError, match="start <= end"):
        sync(store.get("ten", PROTO, RangeByteRequest(5, 2)))
    with pytest.raises(ValueError, match="negative"):
        sync(store.get("ten", PROTO, SuffixByteRequest(-1)))


# -- ownership, pickling -------------------------------------------------------------------------
def test_a_store_over_an_open_target_leaves_it_open_and_does_not_pickle(target: DirectoryTarget) -> None:
    store = AifZarrStore(target)
    sync(store.set("k", cpu.Buffer.from_bytes(b"v")))
    store.close()
    assert target.read_bytes("k") == b"v"  # still usable by its owner
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(store)
    with pytest.raises(TypeError, match="target options"):
        AifZarrStore(target, threads=2)


def test_a_store_that_opened_its_target_closes_it_and_reopens_on_use(tmp_path: Path) -> None:
    store = AifZarrStore(str(tmp_path), threads=2)
    first = store.target
    sync(store.set("k", cpu.Buffer.from_bytes(b"v")))
    store.close()
    assert first.pool._shutdown
    assert sync(store.get("k", PROTO)).to_bytes() == b"v"
    assert store.target is not first
    copy = pickle.loads(pickle.dumps(store.with_read_only(True)))
    assert copy == store and copy.read_only and copy._options.threads == 2
    store.close()
    copy.close()


def test_writes_leave_no_temp_files(tmp_path: Path) -> None:
    store = AifZarrStore(str(tmp_path))
    sync(store.set("a/b/c", cpu.Buffer.from_bytes(b"x" * 1000)))
    sync(store.set("a/b/c", cpu.Buffer.from_bytes(b"y")))  # replaced whole
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == ["a/b/c"]
    assert (tmp_path / "a/b/c").read_bytes() == b"y"
    store.close()


# -- a plain zarr array through the store -------------------------------------------------------
@pytest.mark.parametrize("index_location", ["end", "start"])
def test_a_sharded_array_written_through_the_store_is_read_by_local_store(tmp_path: Path, index_location: str) -> None:
    data = np.arange(5000, dtype=np.float64).reshape(100, 50) % 17
    store = AifZarrStore(str(tmp_path))
    array = zarr.create_array(
        store,
        name="x",
        shape=data.shape,
        dtype=data.dtype,
        chunks=(10, 50),
        shards={"shape": (40, 50), "index_location": index_location},
    )
    array[:] = data
    np.testing.assert_array_equal(array[13:57, 3:9], data[13:57, 3:9])  # a partial shard: the index, then ranges
    plain = zarr.open_array(LocalStore(tmp_path, read_only=True), path="x", mode="r")
    np.testing.assert_array_equal(plain[:], data)
    store.close()
