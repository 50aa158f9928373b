"""The zarr checkpoint format against a real gateway: three targets, plain zarr readers on both
sides (the tree with ``LocalStore``, S3 with ``FsspecStore`` + s3fs), and zarr's store suite
over S3."""

from __future__ import annotations

import gc
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import zarr
from botocore.exceptions import ClientError
from zarr.core.buffer import Buffer, cpu
from zarr.storage import FsspecStore, LocalStore
from zarr.testing.store import StoreTests
from zarr_store_suite import SyncStoreFixtures, synchronous

from aif_gateway import ckpt
from aif_gateway.ckpt.zarrstore import AifZarrStore

from .gateway import Credentials, GatewayProcess

REGION = "us-east-1"
SMALL = {"chunk_mib": 0.05, "shard_mib": 0.25}  # several shards, several chunks in each


def state(seed: int = 0) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    return {
        "model": {
            "embed": torch.randn(1237, 301, generator=g).to(torch.bfloat16),
            "proj": torch.randn(257, 129, 3, generator=g),
            "ids": torch.randint(-(1 << 62), 1 << 62, (1001,), generator=g),
            "mask": torch.rand(17, 5, 3, generator=g) > 0.5,
            "odd": torch.tensor([-0.0, 0.0, float("nan"), float("-inf"), 1e-45]),
            "fp8": torch.randn(333, generator=g).to(torch.float8_e4m3fn),
        },
        "optim": {
            "state": {0: {"exp_avg": torch.randn(301, generator=g), "step": torch.tensor(5.0 + seed)}},
            "param_groups": [{"lr": 0.01, "betas": (0.9, 0.95), "params": [0]}],
        },
        "step": 12 + seed,
        "scale": torch.tensor(1.5, dtype=torch.bfloat16),
    }


def bits(t: torch.Tensor) -> bytes:
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def assert_identical(got: Any, want: Any, where: str = "") -> None:
    assert type(got) is type(want), where
    if isinstance(want, torch.Tensor):
        assert (got.dtype, got.shape) == (want.dtype, want.shape), where
        assert bits(got) == bits(want), where
    elif isinstance(want, dict):
        assert list(got) == list(want), where
        for k in want:
            assert_identical(got[k], want[k], f"{where}/{k}")
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), where
        for i, (a, b) in enumerate(zip(got, want)):
            assert_identical(a, b, f"{where}/{i}")
    else:
        assert got == want, where


def tensors(sd: Any, path: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """(array path, tensor) for every tensor of one dimension or more."""
    if isinstance(sd, dict):
        for k, v in sd.items():
            yield from tensors(v, f"{path}/{k}" if path else str(k))
    elif isinstance(sd, torch.Tensor) and sd.dim():
        yield path, sd


def as_torch(array: np.ndarray, torch_dtype: str) -> torch.Tensor:
    """What a plain-zarr user does: numpy, viewed as the dtype named in the attributes."""
    return torch.from_numpy(np.ascontiguousarray(array)).view(getattr(torch, torch_dtype))


@pytest.fixture
def s3_options(gateway: GatewayProcess, credentials: Credentials) -> dict[str, Any]:
    return {"endpoint": gateway.url, "access_key": credentials.access_key, "secret_key": credentials.secret_key}


@pytest.fixture
def fsspec_options(gateway: GatewayProcess, credentials: Credentials) -> dict[str, Any]:
    # Path-style requests without configuration: botocore addresses an IP endpoint by path (checked: the
    # requests go to http://127.0.0.1:port/bucket/key).
    return {
        "endpoint_url": gateway.url,
        "key": credentials.access_key,
        "secret": credentials.secret_key,
        "client_kwargs": {"region_name": REGION},
    }


def through(
    target: str, tmp_path: Path, bucket: str, gateway_root: Path, s3_options: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    if target == "path":
        return str(tmp_path / "ckpt"), {}
    if target == "bucket-tree":
        return f"s3://{bucket}/run/ckpt", {"root": str(gateway_root)}
    return f"s3://{bucket}/run/ckpt", {"via": "s3", **s3_options}


# -- round trips ---------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["path", "bucket-tree", "s3"])
def test_state_round_trips_bit_exact(
    target: str, tmp_path: Path, bucket: str, gateway_root: Path, s3_options: dict[str, Any]
) -> None:
    dest, options = through(target, tmp_path, bucket, gateway_root, s3_options)
    want = state()
    summary = ckpt.save_zarr(want, dest, **SMALL, **options)
    assert summary["via"] == summary["door"] == ("s3" if target == "s3" else "filesystem")
    assert summary["arrays"] == 7
    assert_identical(ckpt.load_zarr(dest, **options), want)

    into = state(seed=1)  # same structure, other values: filled in place
    embed = into["model"]["embed"]
    got = ckpt.load_zarr(dest, into=into, **options)
    assert got is into and got["model"]["embed"] is embed
    assert_identical(got, want)


def test_loading_into_a_state_dict_that_does_not_match_fails_clearly(tmp_path: Path) -> None:
    dest = str(tmp_path / "ckpt")
    ckpt.save_zarr({"w": torch.ones(4, 3), "b": torch.zeros(3)}, dest)
    with pytest.raises(ValueError, match=r"w: the checkpoint has float32\[4, 3\], .* is float32\[3, 4\]"):
        ckpt.load_zarr(dest, into={"w": torch.empty(3, 4), "b": torch.empty(3)})
    with pytest.raises(KeyError, match="not in the checkpoint: \\['extra'\\]"):
        ckpt.load_zarr(dest, into={"w": torch.empty(4, 3), "extra": torch.empty(1)})
    part = {"b": torch.full((3,), 9.0)}  # a subset loads just that
    assert ckpt.load_zarr(dest, into=part) is part and torch.equal(part["b"], torch.zeros(3))


# -- plain zarr reads what ckpt wrote ------------------------------------------------------------
@pytest.mark.parametrize("target", ["bucket-tree", "s3"])
def test_plain_zarr_reads_the_checkpoint_from_the_tree_and_over_s3(
    target: str,
    tmp_path: Path,
    bucket: str,
    bucket_dir: Path,
    gateway_root: Path,
    s3_options: dict[str, Any],
    fsspec_options: dict[str, Any],
) -> None:
    dest, options = through(target, tmp_path, bucket, gateway_root, s3_options)
    want = state()
    ckpt.save_zarr(want, dest, **SMALL, **options)

    on_tree = zarr.open_group(LocalStore(bucket_dir / "run" / "ckpt", read_only=True), mode="r")
    over_s3 = zarr.open_group(
        FsspecStore.from_url(f"s3://{bucket}/run/ckpt", storage_options=fsspec_options, read_only=True), mode="r"
    )
    assert dict(on_tree.attrs) == dict(over_s3.attrs)
    top = dict(on_tree.attrs["aif_checkpoint"]["tree"]["dict"])  # 0-d tensors and plain values: JSON
    assert top["step"] == {"value": 12}
    assert top["scale"] == {"scalar": {"dtype": "bfloat16", "hex": "c03f", "value": 1.5}}
    assert (
        sorted(name for name, _ in on_tree.members())
        == sorted(name for name, _ in over_s3.members())
        == ["model", "optim"]
    )
    for path, tensor in tensors(want):
        a, b = on_tree[path], over_s3[path]
        assert a.attrs["torch_dtype"] == b.attrs["torch_dtype"] == str(tensor.dtype).removeprefix("torch.")
        from_tree, from_s3 = a[...], b[...]
        assert from_tree.dtype == from_s3.dtype and from_tree.tobytes() == from_s3.tobytes(), path
        assert bits(as_torch(from_tree, a.attrs["torch_dtype"])) == bits(tensor), path
        part = b[1:-1]  # partial shards over S3: the shard index, then ranged GETs
        assert part.tobytes() == from_tree[1:-1].tobytes(), path


# -- codecs --------------------------------------------------------------------------------------
@pytest.mark.parametrize("codec", ["zstd", "blosc"])
def test_codec_is_applied_inside_shards(codec: str, tmp_path: Path) -> None:
    dest = tmp_path / "ckpt"
    compressible = (torch.arange(1 << 20) % 13).to(torch.float32)  # 4 MiB
    noise = torch.randn(1 << 18, generator=torch.Generator().manual_seed(3))  # 1 MiB
    summary = ckpt.save_zarr({"c": compressible, "n": noise}, str(dest), codec=codec, shard_mib=2, chunk_mib=0.5)

    meta = json.loads((dest / "c" / "zarr.json").read_text())
    (sharding,) = meta["codecs"]
    assert sharding["name"] == "sharding_indexed"
    assert sharding["configuration"]["index_location"] == "start"
    assert sharding["configuration"]["chunk_shape"] == [1 << 17]  # 0.5 MiB of float32
    assert codec in [c["name"] for c in sharding["configuration"]["codecs"]]
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [1 << 19]  # 2 MiB shards

    def stored(name: str) -> int:
        return sum(p.stat().st_size for p in (dest / name / "c").rglob("*") if p.is_file())

    assert len(list((dest / "c" / "c").iterdir())) == 2
    assert stored("c") < (4 << 20) // 10
    assert stored("n") > (1 << 20) * 0.8  # noise does not compress: the difference is the codec's work
    assert summary["stored_bytes"] < summary["tensor_bytes"] / 2
    assert_identical(ckpt.load_zarr(str(dest)), {"c": compressible, "n": noise})


# -- complete or invisible -----------------------------------------------------------------------
@pytest.mark.parametrize("target", ["path", "s3"])
def test_an_interrupted_save_is_not_loadable(
    target: str, tmp_path: Path, bucket: str, bucket_dir: Path, gateway_root: Path, s3_options: dict[str, Any]
) -> None:
    dest, options = through(target, tmp_path, bucket, gateway_root, s3_options)
    ckpt.save_zarr(state(), dest, **options)
    # A file where an array's directory must go: writing that array fails mid-save.
    where = tmp_path / "ckpt" if target == "path" else bucket_dir / "run" / "ckpt"
    (where / "blocked").write_bytes(b"not a directory")
    with pytest.raises((OSError, ClientError)):  # the filesystem's error, or the gateway's
        ckpt.save_zarr({"fine": torch.ones(1000), "blocked": torch.ones(10)}, dest, **options)
    # zarr drops the coroutines of the writes it had not started when one fails; collected here,
    # where their "never awaited" RuntimeWarning is expected, not whenever the collector next
    # runs (pytest turns it into an error of whichever test that is).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        gc.collect()
    # The old root went first: what is there now (old arrays, perhaps "fine") loads as nothing.
    assert not (where / "zarr.json").exists()
    with pytest.raises(ckpt.CheckpointNotFound, match="the save did not finish"):
        ckpt.load_zarr(dest, **options)
    with pytest.raises(FileNotFoundError):  # and plain zarr finds no group there either
        zarr.open_group(LocalStore(where, read_only=True), mode="r")


def test_nothing_there_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ckpt.CheckpointNotFound, match="nothing is there"):
        ckpt.load_zarr(str(tmp_path / "none"))


def test_saving_over_a_checkpoint_replaces_it_whole(tmp_path: Path) -> None:
    dest = str(tmp_path / "ckpt")
    ckpt.save_zarr({"a": torch.ones(5), "b": {"c": torch.zeros(7)}}, dest)
    ckpt.save_zarr({"a": torch.arange(3)}, dest)
    assert_identical(ckpt.load_zarr(dest), {"a": torch.arange(3)})
    assert sorted(p.relative_to(dest).as_posix() for p in Path(dest).rglob("*") if p.is_file()) == [
        "a/c/0",
        "a/zarr.json",
        "zarr.json",
    ]


def test_a_foreign_zarr_group_is_not_overwritten(tmp_path: Path) -> None:
    zarr.create_group(LocalStore(tmp_path), attributes={"owner": "someone"})
    with pytest.raises(FileExistsError, match="not an aif checkpoint"):
        ckpt.save_zarr({"a": torch.ones(2)}, str(tmp_path))
    assert json.loads((tmp_path / "zarr.json").read_text())["attributes"] == {"owner": "someone"}


# -- datasets: one zarr array, read over S3 and from the filesystem ---------------------------------
def test_a_zarr_array_reads_the_same_over_s3_and_from_the_tree(
    bucket: str, bucket_dir: Path, fsspec_options: dict[str, Any], s3_options: dict[str, Any]
) -> None:
    data = np.random.default_rng(7).normal(size=(1000, 37)).astype(np.float32)
    written = zarr.create_array(
        LocalStore(bucket_dir / "datasets"),
        name="temps",
        shape=data.shape,
        dtype=data.dtype,
        chunks=(50, 37),
        shards=(200, 37),
    )  # zarr's defaults: index at end
    written[:] = data

    on_tree = zarr.open_array(LocalStore(bucket_dir / "datasets", read_only=True), path="temps", mode="r")
    over_s3 = zarr.open_array(
        FsspecStore.from_url(f"s3://{bucket}/datasets", storage_options=fsspec_options, read_only=True),
        path="temps",
        mode="r",
    )
    aif_store = AifZarrStore(f"s3://{bucket}/datasets", read_only=True, via="s3", **s3_options)
    try:
        over_aif = zarr.open_array(aif_store, path="temps", mode="r")
        for selection in [np.s_[...], np.s_[123:457, 5:30], np.s_[999:, :], np.s_[::97, 36]]:
            want = on_tree[selection]
            np.testing.assert_array_equal(want, data[selection])
            assert over_s3[selection].tobytes() == want.tobytes()
            assert over_aif[selection].tobytes() == want.tobytes()
    finally:
        aif_store.close()


# -- zarr's store suite over S3 ------------------------------------------------------------------
@synchronous
class TestAifZarrStoreOverS3(SyncStoreFixtures, StoreTests[AifZarrStore, cpu.Buffer]):
    store_cls = AifZarrStore
    buffer_cls = cpu.Buffer
    PREFIX = "suite"

    @pytest.fixture(autouse=True)
    def _raw_s3(self, s3, bucket: str) -> None:
        self.s3, self.bucket = s3, bucket

    @pytest.fixture
    def store_kwargs(self, bucket: str, s3_options: dict[str, Any]) -> dict[str, Any]:
        return {"target": f"s3://{bucket}/{self.PREFIX}", "via": "s3", **s3_options}

    async def set(self, store: AifZarrStore, key: str, value: Buffer) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=f"{self.PREFIX}/{key}", Body=value.to_bytes())

    async def get(self, store: AifZarrStore, key: str) -> Buffer:
        body = self.s3.get_object(Bucket=self.bucket, Key=f"{self.PREFIX}/{key}")["Body"].read()
        return self.buffer_cls.from_bytes(body)

    def test_store_repr(self, store: AifZarrStore) -> None:
        assert repr(store).startswith(f"AifZarrStore('aif-s3://s3://{self.bucket}/{self.PREFIX} at http")

    def test_store_supports_writes(self, store: AifZarrStore) -> None:
        assert store.supports_writes

    def test_store_supports_listing(self, store: AifZarrStore) -> None:
        assert store.supports_listing
