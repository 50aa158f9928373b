"""aiobotocore, the asyncio client used by s3fs and many data loaders, in both checksum modes.

The tests drive their own event loop with ``asyncio.run`` so no pytest asyncio plugin is needed.
"""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from aiobotocore.session import get_session

from .clients import client_config
from .gateway import Credentials, GatewayProcess
from .helpers import MiB, random_bytes, unique_bucket_name


@pytest.fixture(params=["when_supported", "when_required"])
def checksums(request: pytest.FixtureRequest) -> str:
    return request.param


def _client(gateway: GatewayProcess, credentials: Credentials, checksums: str):
    return get_session().create_client(
        "s3",
        endpoint_url=gateway.url,
        aws_access_key_id=credentials.access_key,
        aws_secret_access_key=credentials.secret_key,
        config=client_config(checksums),
    )


def test_put_get_list_delete_roundtrip(
    gateway: GatewayProcess, credentials: Credentials, checksums: str, request: pytest.FixtureRequest
) -> None:
    bucket = unique_bucket_name(request)
    data = random_bytes(300_000)

    async def scenario() -> None:
        async with _client(gateway, credentials, checksums) as s3:
            await s3.create_bucket(Bucket=bucket)
            await s3.put_object(Bucket=bucket, Key="x/y.bin", Body=data)
            got = await s3.get_object(Bucket=bucket, Key="x/y.bin")
            async with got["Body"] as stream:
                assert await stream.read() == data
            listed = await s3.list_objects_v2(Bucket=bucket)
            assert [o["Key"] for o in listed["Contents"]] == ["x/y.bin"]
            assert listed["Contents"][0]["Size"] == len(data)
            await s3.delete_object(Bucket=bucket, Key="x/y.bin")
            listed = await s3.list_objects_v2(Bucket=bucket)
            assert listed["KeyCount"] == 0

    asyncio.run(scenario())


def test_multipart_upload_reads_back_byte_exact(
    gateway: GatewayProcess, credentials: Credentials, checksums: str, request: pytest.FixtureRequest
) -> None:
    # aiobotocore has no transfer manager: parts are sent explicitly, uploaded concurrently.
    bucket = unique_bucket_name(request)
    parts = [random_bytes(8 * MiB), random_bytes(8 * MiB), random_bytes(3 * MiB)]
    whole = b"".join(parts)

    async def scenario() -> None:
        async with _client(gateway, credentials, checksums) as s3:
            await s3.create_bucket(Bucket=bucket)
            upload = await s3.create_multipart_upload(Bucket=bucket, Key="mp.bin")
            upload_id = upload["UploadId"]
            answers = await asyncio.gather(
                *(
                    s3.upload_part(Bucket=bucket, Key="mp.bin", UploadId=upload_id, PartNumber=n, Body=body)
                    for n, body in enumerate(parts, 1)
                )
            )
            completed = await s3.complete_multipart_upload(
                Bucket=bucket,
                Key="mp.bin",
                UploadId=upload_id,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": a["ETag"]} for n, a in enumerate(answers, 1)]},
            )
            md5s = b"".join(hashlib.md5(p).digest() for p in parts)
            assert completed["ETag"] == f'"{hashlib.md5(md5s).hexdigest()}-3"'
            got = await s3.get_object(Bucket=bucket, Key="mp.bin")
            async with got["Body"] as stream:
                back = await stream.read()
            assert hashlib.sha256(back).hexdigest() == hashlib.sha256(whole).hexdigest()

    asyncio.run(scenario())
