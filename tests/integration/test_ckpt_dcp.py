"""aif_gateway.ckpt's DCP storage against a real gateway: on the filesystem and over S3, stock interop,
failure cases."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp
from awscrt import checksums as crt

from aif_gateway import ckpt
from aif_gateway.ckpt.dcp import MANIFEST

from .gateway import Credentials, GatewayProcess, free_port

MiB = 1 << 20
pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")


def state(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "model": {
            "embed": torch.randn(3000, 1000, generator=g),  # 12 MB: several 4 MiB stripes
            "norm": torch.rand(1000, generator=g).to(torch.bfloat16),
            "ids": torch.randint(0, 1 << 40, (77,), generator=g),
            "mask": torch.rand(33, 3, generator=g) > 0.5,
        },
        "optim": {"step": 10 + seed, "lr": 0.25, "betas": [0.9, 0.95]},
        "scalar": torch.tensor(3.5 + seed),
    }


def empty_like(sd: dict) -> dict:
    out: dict = {}
    for k, v in sd.items():
        if isinstance(v, dict):
            out[k] = empty_like(v)
        elif isinstance(v, torch.Tensor):
            out[k] = torch.zeros_like(v)
        else:
            out[k] = None if not isinstance(v, (int, float)) else type(v)(0)
    return out


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], dict):
            assert_same(a[k], b[k])
        elif isinstance(a[k], torch.Tensor):
            assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
        else:
            assert a[k] == b[k], k


@pytest.fixture
def s3_options(gateway: GatewayProcess, credentials: Credentials) -> dict:
    return {
        "endpoint": gateway.url,
        "access_key": credentials.access_key,
        "secret_key": credentials.secret_key,
        "via": "s3",
        "part_size": 5 * MiB,
    }


def test_s3_save_is_a_stock_checkpoint_in_the_tree(s3, bucket, bucket_dir, s3_options):
    sd = state()
    stats = ckpt.save(sd, f"s3://{bucket}/runs/a/step-10", **s3_options)
    assert stats.via == "s3" and stats.files == 2 and stats.bytes > 12_000_000  # two files a rank

    # One copy, readable both ways: PyTorch's own FileSystemReader loads the gateway's files from the tree.
    out = empty_like(sd)
    dcp.load(out, storage_reader=dcp.FileSystemReader(bucket_dir / "runs/a/step-10"))
    assert_same(out, sd)
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == [f"runs/a/step-10/{n}" for n in (".metadata", "__0_0.distcp", "__0_1.distcp", MANIFEST)]

    # The data file went up as a multipart upload with a FULL_OBJECT CRC64NVME the gateway checked and kept.
    data = (bucket_dir / "runs/a/step-10/__0_0.distcp").read_bytes()
    head = s3.head_object(Bucket=bucket, Key="runs/a/step-10/__0_0.distcp", ChecksumMode="ENABLED")
    assert head["ETag"].strip('"').endswith(f"-{-(-len(data) // (5 * MiB))}")
    assert head["ChecksumCRC64NVME"] == base64.b64encode(crt.crc64nvme(data).to_bytes(8, "big")).decode()
    assert head["ChecksumType"] == "FULL_OBJECT"


def test_s3_load_verified(bucket, s3_options):
    sd = state(1)
    ckpt.save(sd, f"s3://{bucket}/c", **s3_options)
    for verify in (True, False):
        out = empty_like(sd)
        reader = ckpt.AifStorageReader(f"s3://{bucket}/c", verify=verify, **s3_options)
        dcp.load(out, storage_reader=reader)
        assert_same(out, sd)
        # Large whole tensors land in their targets' memory straight from the ranged GETs.
        assert reader.straight_reads == 1  # the embedding; the other tensors are under 64 KiB
    report = ckpt.verify(f"s3://{bucket}/c", **s3_options)
    assert report["files"] == 2 and report["items"] == 8 and report["bytes"] > 12_000_000


def test_direct_writes_are_objects_the_gateway_serves(s3, bucket, bucket_dir, bucket_tmp, gateway_root, s3_options):
    sd = state(2)
    stats = ckpt.save(sd, f"s3://{bucket}/direct", root=gateway_root, part_size=4 * MiB, checksum=True)
    assert stats.via == "filesystem"
    path = bucket_dir / "direct/__0_0.distcp"
    data = path.read_bytes()
    # Served at once, with the record the writer set: size, CRC64NVME (botocore validates it on GET).
    got = s3.get_object(Bucket=bucket, Key="direct/__0_0.distcp", ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert got["ChecksumCRC64NVME"] == base64.b64encode(crt.crc64nvme(data).to_bytes(8, "big")).decode()
    listed = {o["Key"]: o for o in s3.list_objects_v2(Bucket=bucket, Prefix="direct/")["Contents"]}
    assert listed["direct/__0_0.distcp"]["Size"] == len(data)
    assert listed["direct/__0_0.distcp"]["ETag"] == got["ETag"]
    # No temp file of the writer is left in the bucket's internal directory.
    assert not [p for p in bucket_tmp.iterdir()]
    # ... and the checkpoint loads through S3 from the gateway, verified.
    out = empty_like(sd)
    ckpt.load(out, f"s3://{bucket}/direct", verify=True, **s3_options)
    assert_same(out, sd)


def test_direct_md5_etags_match_what_s3_uploads_give(s3, bucket, bucket_dir, gateway_root):
    sd = state(3)
    ckpt.save(sd, f"s3://{bucket}/md5", root=gateway_root, part_size=4 * MiB, md5=True)
    data = (bucket_dir / "md5/__0_0.distcp").read_bytes()
    parts = [data[i : i + 4 * MiB] for i in range(0, len(data), 4 * MiB)]
    expected = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + f"-{len(parts)}"
    assert s3.head_object(Bucket=bucket, Key="md5/__0_0.distcp")["ETag"] == f'"{expected}"'
    # A one-stripe file gets the plain MD5, as a single PutObject would.
    manifest = (bucket_dir / f"md5/{MANIFEST}").read_bytes()
    assert s3.head_object(Bucket=bucket, Key=f"md5/{MANIFEST}")["ETag"] == f'"{hashlib.md5(manifest).hexdigest()}"'
    # partNumber reads follow the recorded stripes.
    second = s3.get_object(Bucket=bucket, Key="md5/__0_0.distcp", PartNumber=2)
    assert second["Body"].read() == parts[1] and second["PartsCount"] == len(parts)


def test_stock_filesystem_writer_checkpoint_loads_through_s3(bucket, bucket_dir, s3_options):
    sd = state(4)
    dcp.save(sd, storage_writer=dcp.FileSystemWriter(bucket_dir / "stock", thread_count=2))
    out = empty_like(sd)
    reader = ckpt.AifStorageReader(f"s3://{bucket}/stock", **s3_options)
    dcp.load(out, storage_reader=reader)
    assert_same(out, sd)
    assert reader.straight_reads == 0  # no manifest: every record goes through torch.load
    with pytest.raises(ckpt.IntegrityError, match="no aif-manifest.json"):
        ckpt.load(empty_like(sd), f"s3://{bucket}/stock", verify=True, **s3_options)


def test_plain_path_and_paths_inside_a_bucket(tmp_path, bucket, bucket_dir, s3):
    sd = state(5)
    stats = ckpt.save(sd, tmp_path / "ck")
    assert stats.via == "filesystem" and "bucket" not in stats.location
    out = empty_like(sd)
    dcp.load(out, storage_reader=dcp.FileSystemReader(tmp_path / "ck"))
    assert_same(out, sd)

    # A path that lies in a gateway bucket is written as objects of that bucket (metadata included).
    stats = ckpt.save(sd, bucket_dir / "by-path")
    assert f"bucket {bucket}" in stats.location
    head = s3.head_object(Bucket=bucket, Key="by-path/__0_0.distcp", ChecksumMode="ENABLED")
    assert "ChecksumCRC64NVME" not in head  # by default nothing but the items' xxh3 is computed
    # The ETag names the content (from the items' digests): the same state saved again keeps it.
    etag = head["ETag"]
    ckpt.save(sd, bucket_dir / "by-path")
    assert s3.head_object(Bucket=bucket, Key="by-path/__0_0.distcp")["ETag"] == etag
    ckpt.save(state(6), bucket_dir / "by-path")
    assert s3.head_object(Bucket=bucket, Key="by-path/__0_0.distcp")["ETag"] != etag


def test_verify_finds_a_damaged_file(bucket, bucket_dir, gateway_root, s3_options):
    sd = state(6)
    ckpt.save(sd, f"s3://{bucket}/bad", root=gateway_root)
    path = bucket_dir / "bad/__0_0.distcp"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10  # inside the embedding's bytes
    path.write_bytes(bytes(data))
    with pytest.raises(ckpt.IntegrityError, match="do not match the manifest"):
        ckpt.verify(f"s3://{bucket}/bad", **s3_options)
    with pytest.raises(ckpt.IntegrityError, match="do not match the manifest"):
        ckpt.load(empty_like(sd), f"s3://{bucket}/bad", verify=True, **s3_options)
    out = empty_like(sd)  # unverified, the flipped bit goes unnoticed: that is what verify is for
    ckpt.load(out, f"s3://{bucket}/bad", **s3_options)
    assert not torch.equal(out["model"]["embed"], sd["model"]["embed"])


class Explodes:
    """A state-dict value whose pickling fails: a save that dies half-way through its files."""

    def __reduce__(self):
        raise RuntimeError("boom while serialising")


@pytest.mark.parametrize("via", ["s3", "filesystem"])
def test_failed_overwrite_leaves_nothing_loadable(s3, bucket, bucket_dir, bucket_tmp, gateway_root, s3_options, via):
    dest = f"s3://{bucket}/over"
    opts = s3_options if via == "s3" else {"root": gateway_root}
    ckpt.save(state(7), dest, **opts)
    bad = state(8)
    bad["optim"]["extra"] = Explodes()
    with pytest.raises(Exception, match="boom while serialising"):
        ckpt.save(bad, dest, **opts)
    # The old .metadata went first: no mix of old metadata and new files can be loaded.
    with pytest.raises(ckpt.CheckpointNotFound, match="no complete checkpoint"):
        ckpt.load(empty_like(state(7)), dest, **opts)
    assert ".metadata" not in {p.name for p in (bucket_dir / "over").iterdir()}
    assert not [u for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]
    assert not list(bucket_tmp.iterdir())


def test_killed_save_leaves_no_checkpoint_and_no_partial_object(bucket, bucket_dir, s3, s3_options, tmp_path):
    script = tmp_path / "slow_save.py"
    script.write_text(
        "import sys, torch\nfrom aif_gateway import ckpt\n"
        "sd = {'w': torch.randn(96 * 1024 * 1024 // 4)}\n"
        "print('saving', flush=True)\n"
        f"ckpt.save(sd, sys.argv[1], **{s3_options!r}, threads=1)\n"
    )
    proc = subprocess.Popen([sys.executable, str(script), f"s3://{bucket}/killed"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "saving"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait for the upload to be under way
        uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        if uploads and s3.list_parts(Bucket=bucket, Key=uploads[0]["Key"], UploadId=uploads[0]["UploadId"]).get(
            "Parts"
        ):
            break
        time.sleep(0.02)
    else:
        pytest.fail("the save never started a multipart upload")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert listed == []  # neither the data file (its upload never completed) nor .metadata
    with pytest.raises(ckpt.CheckpointNotFound):
        ckpt.load({"w": torch.zeros(1)}, f"s3://{bucket}/killed", **s3_options)


def test_async_save_blocks_only_for_the_copy(bucket, s3_options):
    sd = state(9)
    expected = {k: v.clone() for k, v in sd["model"].items()}
    pending = ckpt.save_async(sd, f"s3://{bucket}/async", **s3_options)
    # Training goes on: the live tensors change while the staged copy is written.
    sd["model"]["embed"].add_(1.0)
    stats = pending.wait(timeout=120)
    assert pending.done() and stats.files == 2 and pending.blocked_s > 0
    out = empty_like(state(9))
    ckpt.load(out, f"s3://{bucket}/async", verify=True, **s3_options)
    for k, v in expected.items():
        assert torch.equal(out["model"][k], v), k


def test_stock_async_save_with_our_writer(bucket, s3_options):
    sd = state(10)
    future = dcp.async_save(sd, storage_writer=ckpt.AifStorageWriter(f"s3://{bucket}/stock-async", **s3_options))
    getattr(future, "upload_completion", future).result(timeout=120)
    out = empty_like(sd)
    dcp.load(out, storage_reader=ckpt.AifStorageReader(f"s3://{bucket}/stock-async", verify=True, **s3_options))
    assert_same(out, sd)


def run_ranks(action: str, dest: str, options: dict, world: int = 2) -> list[dict]:
    port = free_port()
    procs = []
    for rank in range(world):
        env = dict(
            os.environ,
            RANK=str(rank),
            WORLD_SIZE=str(world),
            LOCAL_RANK=str(rank),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            AIF_CKPT_OPTIONS=json.dumps(options),
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, str(Path(__file__).with_name("ckpt_rank.py")), action, dest],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err[-4000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    return sorted(outs, key=lambda o: o["rank"])


@pytest.mark.parametrize("via", ["s3", "filesystem"])
def test_two_ranks_with_gloo(bucket, bucket_dir, gateway_root, s3_options, via):
    opts = dict(s3_options) if via == "s3" else {"root": str(gateway_root)}
    dest = f"s3://{bucket}/ranks-{via}"
    saved = run_ranks("save", dest, opts)
    # dcp saves replicated values (bias, step) on one rank only: the other has just its shard,
    # so one file; two files where there are two groups of items to write.
    assert [o["via"] for o in saved] == [via, via] and sorted(o["files"] for o in saved) == [1, 2]
    names = sorted(p.name for p in (bucket_dir / f"ranks-{via}").iterdir())
    expected = {f"__{o['rank']}_{n}.distcp" for o in saved for n in range(o["files"])}
    assert names == sorted({".metadata", MANIFEST} | expected)
    # Both ranks load their own shards back, verified.
    loaded = run_ranks("load", dest, opts)
    assert all(o["weight_ok"] and o["bias_ok"] and o["step"] == 42 for o in loaded)
    # A single process reshards: the full tensor, through S3 and with stock FileSystemReader.
    from .ckpt_rank import COLS, ROWS, full_weight

    for reader in (
        ckpt.AifStorageReader(dest, verify=True, **s3_options),
        dcp.FileSystemReader(bucket_dir / f"ranks-{via}"),
    ):
        out = {"weight": torch.zeros(ROWS, COLS), "bias": torch.zeros(COLS, dtype=torch.bfloat16), "step": 0}
        dcp.load(out, storage_reader=reader)
        assert torch.equal(out["weight"], full_weight()) and out["step"] == 42


def test_saving_over_a_bigger_checkpoint_drops_its_extra_files(bucket, bucket_dir, gateway_root):
    dest = f"s3://{bucket}/shrinks"
    ckpt.save(state(11), dest, root=gateway_root, files_per_rank=3)
    ckpt.save(state(11), f"{dest}/nested", root=gateway_root)  # another checkpoint below this one
    assert sorted(p.name for p in (bucket_dir / "shrinks").glob("*.distcp")) == [
        "__0_0.distcp",
        "__0_1.distcp",
        "__0_2.distcp",
    ]
    ckpt.save(state(12), dest, root=gateway_root, files_per_rank=1)
    assert sorted(p.name for p in (bucket_dir / "shrinks").glob("*.distcp")) == ["__0_0.distcp"]
    assert len(list((bucket_dir / "shrinks/nested").glob("*.distcp"))) == 2  # not this checkpoint's
    out = empty_like(state(12))
    ckpt.load(out, dest, verify=True, root=gateway_root)
    assert_same(out, state(12))


def test_errors_name_what_to_fix(credentials, s3_options):
    keys = {"access_key": credentials.access_key, "secret_key": credentials.secret_key}
    with pytest.raises(
        ConnectionError, match=r"cannot reach the S3 endpoint http://127\.0\.0\.1:\d+ .*gateway running"
    ):
        ckpt.save(state(), "s3://some-bucket/x", endpoint=f"http://127.0.0.1:{free_port()}", via="s3", **keys)
    with pytest.raises(Exception, match="NoSuchBucket"):
        ckpt.save(state(), "s3://no-such-bucket-here/x", **s3_options)
    with pytest.raises(ValueError, match="InvalidBucketName"):
        ckpt.save(state(), "s3://UPPER/x", **s3_options)
    with pytest.raises(FileNotFoundError, match="is not mounted here"):
        ckpt.save(state(), "s3://some-bucket/x", via="filesystem")
