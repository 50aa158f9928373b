"""Third-party training-data clients against the real gateway: one copy, readable both ways.

- s3torchconnector (the AWS CRT client through mountpoint-s3-client: every upload is a multipart
  upload in 8 MiB parts signed ``UNSIGNED-PAYLOAD``, reads are parallel 8 MiB Range GETs, renames
  are CopyObject + DeleteObject): ``S3Checkpoint`` and the DCP ``S3StorageWriter``/``S3StorageReader``;
  what it writes is read back from the tree with ``torch.load`` and the stock ``FileSystemReader``.
- pyarrow datasets over ``pyarrow.fs.S3FileSystem``: a hive-partitioned Parquet dataset written on
  the filesystem is read through the gateway with row-group range reads (counted in the gateway's
  access log), and one written through the gateway (aws-chunked parts with CRC64NVME trailers) is
  read from the filesystem.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import torch
import torch.distributed.checkpoint as dcp
from s3torchconnector import S3Checkpoint, S3ClientConfig
from s3torchconnector.dcp import S3StorageReader, S3StorageWriter

from .gateway import Credentials, GatewayProcess
from .helpers import MiB

REGION = "us-east-1"
CRT_PART_SIZE = S3ClientConfig().part_size

# Single-process DCP save/load warns that torch.distributed is not initialised; that is the intent.
pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")


@pytest.fixture
def crt_env(monkeypatch: pytest.MonkeyPatch, gateway: GatewayProcess, credentials: Credentials, tmp_path: Path) -> None:
    """Keys and endpoint the way the CRT client's default chain finds them: the environment.

    The DCP writer and reader build their own client without an ``endpoint`` argument, so the
    endpoint comes from ``AWS_ENDPOINT_URL``; config files are pointed at nothing so a developer's
    ``~/.aws`` cannot leak in.
    """
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", credentials.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", credentials.secret_key)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", gateway.url)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def _crt_config() -> S3ClientConfig:
    return S3ClientConfig(force_path_style=True, max_attempts=1)


def _state_dict(total_bytes: int, pieces: int, seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    per = total_bytes // pieces // 4
    state = {f"layer{i}.weight": torch.randn(per, generator=gen) for i in range(pieces)}
    state["step"] = torch.tensor(seed)
    state["bf16"] = torch.randn(1000, generator=gen).to(torch.bfloat16)
    return state


def _assert_crt_multipart(s3, bucket: str, key: str, size: int) -> None:
    """The object came in as a multipart upload of CRT-sized parts (the ETag counts them)."""
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] == size
    assert head["ETag"].endswith(f'-{-(-size // CRT_PART_SIZE)}"'), head["ETag"]


def _assert_state_equal(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert sorted(got) == sorted(want)
    for name, tensor in want.items():
        assert got[name].dtype == tensor.dtype, name
        assert torch.equal(got[name], tensor), name


def test_s3checkpoint_multipart_save_loads_back_and_is_a_plain_file(
    crt_env: None, gateway: GatewayProcess, s3, bucket: str, bucket_dir: Path
) -> None:
    state = _state_dict(40 * MiB, pieces=5, seed=1)
    checkpoint = S3Checkpoint(region=REGION, endpoint=gateway.url, s3client_config=_crt_config())
    uri = f"s3://{bucket}/run1/epoch-3.pt"
    with checkpoint.writer(uri) as writer:
        torch.save(state, writer)

    on_disk = bucket_dir / "run1" / "epoch-3.pt"
    size = on_disk.stat().st_size
    assert size > 4 * CRT_PART_SIZE
    # The CRT client really uploaded in parts: a multipart ETag with one part per part size.
    _assert_crt_multipart(s3, bucket, "run1/epoch-3.pt", size)

    with checkpoint.reader(uri) as reader:
        loaded = torch.load(reader, weights_only=True)
    _assert_state_equal(loaded, state)

    # Same bytes the other way.
    with checkpoint.reader(uri) as reader:
        over_s3 = reader.read()
    assert hashlib.sha256(on_disk.read_bytes()).digest() == hashlib.sha256(over_s3).digest()
    _assert_state_equal(torch.load(on_disk, weights_only=True), state)


def test_dcp_s3_storage_round_trip_and_stock_filesystem_reader(
    crt_env: None, s3, bucket: str, bucket_dir: Path
) -> None:
    state = _state_dict(24 * MiB, pieces=4, seed=2)
    uri = f"s3://{bucket}/dcp/step-100"
    dcp.save(state, storage_writer=S3StorageWriter(REGION, uri, s3client_config=_crt_config()))

    # .metadata was uploaded as .metadata.tmp, then renamed (CopyObject + DeleteObject).
    tree = bucket_dir / "dcp" / "step-100"
    assert sorted(p.name for p in tree.iterdir()) == [".metadata", "__0_0.distcp"]
    shard = tree / "__0_0.distcp"
    assert shard.stat().st_size > 2 * CRT_PART_SIZE
    _assert_crt_multipart(s3, bucket, "dcp/step-100/__0_0.distcp", shard.stat().st_size)

    over_s3 = {name: torch.zeros_like(t) for name, t in state.items()}
    dcp.load(over_s3, storage_reader=S3StorageReader(REGION, uri, s3client_config=_crt_config()))
    _assert_state_equal(over_s3, state)

    from_tree = {name: torch.zeros_like(t) for name, t in state.items()}
    dcp.load(from_tree, storage_reader=dcp.FileSystemReader(str(tree)))
    _assert_state_equal(from_tree, state)


# --- pyarrow datasets ------------------------------------------------------------------------

ROWS = 6000
ROWS_PER_FILE = 1000
ROWS_PER_GROUP = 250
# Bulky per-row payload: each row group's payload chunk is far larger than its id/value chunks
# and than pyarrow's coalescing gap (8 KiB), so a projection that skips it must skip bytes.
PAYLOAD_BYTES = 1000
CATEGORIES = ("a", "b", "c")
# bytes_out in the access log counts the response head too.
HEADER_ALLOWANCE = 1024


def _dataset_table() -> pa.Table:
    rng = np.random.default_rng(5)
    ids = np.arange(ROWS, dtype=np.int64)
    return pa.table(
        {
            "id": ids,
            "value": rng.standard_normal(ROWS),
            "payload": pa.array([rng.bytes(PAYLOAD_BYTES) for _ in range(ROWS)], pa.binary()),
            "category": np.array(CATEGORIES)[ids % len(CATEGORIES)],
        }
    )


def _write_hive(table: pa.Table, base: str, filesystem: pafs.FileSystem | None = None) -> None:
    ds.write_dataset(
        table,
        base,
        filesystem=filesystem,
        format="parquet",
        partitioning=["category"],
        partitioning_flavor="hive",
        max_rows_per_file=ROWS_PER_FILE,
        min_rows_per_group=ROWS_PER_GROUP,
        max_rows_per_group=ROWS_PER_GROUP,
        preserve_order=True,  # ids ascending in each file: row-group statistics can prune
    )


def _arrow_s3(gateway: GatewayProcess, credentials: Credentials) -> pafs.S3FileSystem:
    return pafs.S3FileSystem(
        endpoint_override=gateway.url.removeprefix("http://"),
        scheme="http",
        access_key=credentials.access_key,
        secret_key=credentials.secret_key,
        region=REGION,
    )


def _by_id(table: pa.Table, columns: list[str]) -> pa.Table:
    return table.select(columns).sort_by("id")


def _gets_since(gateway: GatewayProcess, mark: int, prefix: str) -> list[tuple[str, int, int]]:
    """(key path, status, bytes sent) of each GET under ``prefix`` logged after offset ``mark``.

    The gateway logs a request just after its last byte went out, so the log is re-read until
    it stops growing rather than trusting the first look.
    """
    text = gateway.stderr()
    for _ in range(20):
        time.sleep(0.1)
        again = gateway.stderr()
        if again == text:
            break
        text = again
    gets = []
    for line in text[mark:].splitlines():
        if not line.startswith("{") or '"aif_gateway.access"' not in line:
            continue
        entry = json.loads(line)
        method, resource, _status = entry["msg"].split(" ")
        if method == "GET" and resource.startswith(prefix):
            gets.append((resource.removeprefix(prefix), entry["status"], entry["bytes_out"]))
    return gets


def test_pyarrow_reads_hive_parquet_from_the_tree_with_row_group_ranges(
    gateway: GatewayProcess, credentials: Credentials, bucket: str, bucket_dir: Path
) -> None:
    table = _dataset_table()
    _write_hive(table, str(bucket_dir / "events"))
    files = {
        str(p.relative_to(bucket_dir / "events")): p.stat().st_size for p in (bucket_dir / "events").rglob("*.parquet")
    }
    assert len(files) == ROWS // ROWS_PER_FILE == 6
    for name in files:
        assert pq.ParquetFile(bucket_dir / "events" / name).num_row_groups == 4
    s3fs = _arrow_s3(gateway, credentials)
    prefix = f"/{bucket}/events/"

    mark = len(gateway.stderr())
    over_s3 = ds.dataset(f"{bucket}/events", filesystem=s3fs, format="parquet", partitioning="hive").to_table()
    full_gets = _gets_since(gateway, mark, prefix)
    on_fs = ds.dataset(str(bucket_dir / "events"), format="parquet", partitioning="hive").to_table()
    assert over_s3.schema == on_fs.schema
    assert _by_id(over_s3, table.column_names).equals(_by_id(on_fs, table.column_names))
    assert _by_id(on_fs, table.column_names).equals(_by_id(table, table.column_names))
    # The log sees the whole transfer: a full read fetches at least every byte of every file.
    assert {name for name, _, _ in full_gets} == set(files)
    assert sum(sent for _, _, sent in full_gets) >= sum(files.values())

    # The schema is known now, so opening the dataset again reads no file to infer it.
    where = (pc.field("category") == "b") & (pc.field("id") >= 4500)
    mark = len(gateway.stderr())
    picked = ds.dataset(
        f"{bucket}/events", filesystem=s3fs, format="parquet", schema=on_fs.schema, partitioning="hive"
    ).to_table(columns=["id", "value"], filter=where)
    gets = _gets_since(gateway, mark, prefix)
    expected = table.filter(where).select(["id", "value"])
    assert picked.num_rows == expected.num_rows == 500
    assert picked.sort_by("id").equals(expected.sort_by("id"))

    # Partition pruning: only category=b files were opened at all, each through Range GETs.
    b0, b1 = "category=b/part-0.parquet", "category=b/part-1.parquet"
    assert {name for name, _, _ in gets} == {b0, b1}, gets
    assert {status for _, status, _ in gets} == {206}, gets
    assert sum(sent for _, _, sent in gets) < (files[b0] + files[b1]) // 8, gets
    # Row-group granularity. part-0 holds ids < 3000: its statistics rule every row group out,
    # so only its footer is read. part-1 holds ids 3001..5998, and row groups 2 and 3 match:
    # besides its footer, one range each, as large as that row group's id and value chunks
    # (plus response headers) and nowhere near its payload chunk.
    sizes0 = sorted(sent for name, _, sent in gets if name == b0)
    sizes1 = sorted(sent for name, _, sent in gets if name == b1)
    assert len(sizes0) == 1 and len(sizes1) == 3, gets
    meta = pq.ParquetFile(bucket_dir / "events" / b1).metadata
    assert meta.schema.names[:2] == ["id", "value"]
    chunks = sorted(sum(meta.row_group(rg).column(c).total_compressed_size for c in (0, 1)) for rg in (2, 3))
    for sent, chunk in zip(sizes1[:2], chunks):
        assert chunk <= sent < chunk + HEADER_ALLOWANCE, (sizes1, chunks)
    payload_chunk = meta.row_group(2).column(2).total_compressed_size
    assert payload_chunk > 10 * chunks[-1]


def test_pyarrow_writes_a_dataset_through_s3_that_the_tree_reads(
    gateway: GatewayProcess, credentials: Credentials, bucket: str, bucket_dir: Path
) -> None:
    table = _dataset_table()
    _write_hive(table, f"{bucket}/written", filesystem=_arrow_s3(gateway, credentials))

    # Its directory markers (PUT "written/", "written/category=a/", ...) are directories in the
    # tree, not stray files: only the Parquet files are there.
    tree = bucket_dir / "written"
    names = sorted(str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file())
    assert names == [f"category={c}/part-{i}.parquet" for c in CATEGORIES for i in (0, 1)]
    for name in names:
        assert pq.ParquetFile(tree / name).num_row_groups == 4
    on_fs = ds.dataset(str(tree), format="parquet", partitioning="hive").to_table()
    assert _by_id(on_fs, table.column_names).equals(_by_id(table, table.column_names))
