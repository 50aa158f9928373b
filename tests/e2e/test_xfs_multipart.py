"""Multipart uploads through a real gateway whose root is on XFS with reflink: uniform parts are
published by renaming the upload's data file, other lists are assembled from shared extents."""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from boto3.s3.transfer import TransferConfig
from integration.clients import boto3_client
from integration.gateway import Credentials, GatewayProcess

from .xfs_loop import shared_bytes, xfs_mount  # noqa: F401 (a fixture)

MIB = 1 << 20
BUCKET = "xfs"


@pytest.fixture(scope="module")
def gateway(xfs_mount: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    root = xfs_mount / "root"
    root.mkdir()
    credentials = Credentials("AKXFS" + secrets.token_hex(6).upper(), secrets.token_urlsafe(30))
    gw = GatewayProcess(root, tmp_path_factory.mktemp("xfs-logs"), credentials=credentials, workers=2).start()
    try:
        boto3_client(gw.url, credentials).create_bucket(Bucket=BUCKET)
        yield gw
    finally:
        gw.stop()
        assert not gw.tracebacks(), gw.tracebacks()


@pytest.fixture
def s3(gateway: GatewayProcess):
    assert gateway.credentials is not None
    return boto3_client(gateway.url, gateway.credentials)


def payload(size: int) -> bytes:
    return os.urandom(size)


def multipart_etag(parts: list[bytes]) -> str:
    return '"' + hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + f'-{len(parts)}"'


def upload_dir(gateway: GatewayProcess, upload_id: str) -> Path:
    return gateway.root / ".aifgw" / "state" / BUCKET / "uploads" / upload_id


def upload_parts(s3, key: str, upload_id: str, parts: list[bytes], workers: int) -> list[dict]:
    def upload(number: int) -> dict:
        answer = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=number, Body=parts[number - 1])
        return {"PartNumber": number, "ETag": answer["ETag"]}

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(upload, range(1, len(parts) + 1)))


def test_uniform_parts_uploaded_concurrently_are_published_by_rename(s3, gateway: GatewayProcess) -> None:
    parts = [payload(8 * MIB) for _ in range(4)] + [payload(3 * MIB + 7)]
    upload_id = s3.create_multipart_upload(Bucket=BUCKET, Key="uniform")["UploadId"]
    done = upload_parts(s3, "uniform", upload_id, parts, workers=4)
    data_inode = (upload_dir(gateway, upload_id) / "data").stat().st_ino

    answer = s3.complete_multipart_upload(
        Bucket=BUCKET, Key="uniform", UploadId=upload_id, MultipartUpload={"Parts": done}
    )

    assert answer["ETag"] == multipart_etag(parts)
    assert (gateway.root / BUCKET / "uniform").stat().st_ino == data_inode  # renamed, not copied
    body = s3.get_object(Bucket=BUCKET, Key="uniform")["Body"].read()
    assert body == b"".join(parts)
    assert not upload_dir(gateway, upload_id).exists()


def test_non_uniform_parts_are_assembled_from_reflinked_extents(s3, gateway: GatewayProcess) -> None:
    parts = [payload(5 * MIB), payload(8 * MIB), payload(MIB + 100)]  # part 2 > P: part files
    upload_id = s3.create_multipart_upload(Bucket=BUCKET, Key="uneven")["UploadId"]
    done = upload_parts(s3, "uneven", upload_id, parts, workers=1)
    # Hard links keep the parts' extents alive after Complete removes the upload, so the
    # object's extents still show as shared if (and only if) they were reflinked.
    witness = gateway.root.parent / f"witness-{upload_id}"
    witness.mkdir()
    for source in upload_dir(gateway, upload_id).iterdir():
        if source.name == "data" or (source.name.startswith("part-") and source.suffix != ".json"):
            os.link(source, witness / source.name)
    assert len(list(witness.iterdir())) == 3  # part 1 in the data file, parts 2 and 3 in their own
    os.sync()
    before = os.statvfs(gateway.root)

    answer = s3.complete_multipart_upload(
        Bucket=BUCKET, Key="uneven", UploadId=upload_id, MultipartUpload={"Parts": done}
    )

    os.sync()
    after = os.statvfs(gateway.root)
    assert answer["ETag"] == multipart_etag(parts)
    assert s3.get_object(Bucket=BUCKET, Key="uneven")["Body"].read() == b"".join(parts)
    published = gateway.root / BUCKET / "uneven"
    total = sum(len(p) for p in parts)
    block = os.statvfs(gateway.root).f_bsize
    # FICLONERANGE shares the block-aligned ranges; XFS's copy_file_range reflinks the tail too.
    assert shared_bytes(published) >= total - total % block
    grown = (before.f_bfree - after.f_bfree) * after.f_frsize
    assert grown < total // 4, f"the filesystem lost {grown} bytes to a {total}-byte reflinked object"


def test_boto3_managed_upload_round_trips(s3, gateway: GatewayProcess) -> None:
    data = payload(37 * MIB + 5)
    config = TransferConfig(multipart_threshold=8 * MIB, multipart_chunksize=8 * MIB, max_concurrency=6)
    source = gateway.root.parent / "managed.bin"
    source.write_bytes(data)
    s3.upload_file(str(source), BUCKET, "managed", Config=config)
    head = s3.head_object(Bucket=BUCKET, Key="managed")
    assert head["ContentLength"] == len(data) and head["ETag"].endswith('-5"')
    assert s3.get_object(Bucket=BUCKET, Key="managed")["Body"].read() == data
    assert list((gateway.root / ".aifgw" / "state" / BUCKET / "uploads").iterdir()) == []


def test_clone_range_shares_aligned_ranges_and_leaves_the_rest_to_copying(xfs_mount: Path) -> None:
    from aif_gateway.store.multipart_layout import clone_range

    src_path, dst_path = xfs_mount / "clone-src", xfs_mount / "clone-dst"
    data = payload(3 * MIB + 10)
    src_path.write_bytes(data)
    src = os.open(src_path, os.O_RDONLY)
    dst = os.open(dst_path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        assert clone_range(src, dst, MIB, 2 * MIB + 10, 0) == 2 * MIB  # the tail is not a whole block
        assert clone_range(src, dst, 100, 4096, 2 * MIB) == 0  # unaligned source offset
    finally:
        os.close(src)
        os.close(dst)
    assert dst_path.read_bytes() == data[MIB : 3 * MIB]
    assert shared_bytes(dst_path) == 2 * MIB
