"""One namespace: files in the tree are objects, objects are files, internal state stays hidden."""

from __future__ import annotations

import http.client
from pathlib import Path

from .gateway import Credentials, GatewayProcess
from .helpers import list_keys, random_bytes, snapshot
from .rawhttp import sign, signed_request


def test_file_written_into_the_tree_is_listed_and_readable(s3, bucket: str, bucket_dir: Path) -> None:
    data = b"id,value\n" + b"1,2\n" * 5000
    (bucket_dir / "results").mkdir()
    (bucket_dir / "results" / "table.csv").write_bytes(data)

    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [(o["Key"], o["Size"]) for o in listed] == [("results/table.csv", len(data))]

    got = s3.get_object(Bucket=bucket, Key="results/table.csv")
    assert got["Body"].read() == data
    assert got["ContentType"] == "text/csv"
    # Not an MD5 of the bytes, so it must carry a '-' (clients then skip MD5 verification).
    assert "-" in got["ETag"]
    assert listed[0]["ETag"] == got["ETag"]


def test_foreign_file_etag_is_stable_across_workers_and_changes_with_content(
    gateway: GatewayProcess, credentials: Credentials, bucket: str, bucket_dir: Path
) -> None:
    path = bucket_dir / "model.safetensors"
    path.write_bytes(random_bytes(50_000))
    # A fresh connection per request, so the three workers all get asked.
    etags = {
        signed_request(gateway.port, credentials, "HEAD", f"/{bucket}/model.safetensors").headers["ETag"]
        for _ in range(12)
    }
    assert len(etags) == 1
    (etag,) = etags
    assert "-" in etag

    path.write_bytes(random_bytes(60_000))
    changed = signed_request(gateway.port, credentials, "HEAD", f"/{bucket}/model.safetensors")
    assert changed.headers["ETag"] != etag


def test_object_put_over_s3_is_a_plain_file(s3, bucket: str, bucket_dir: Path) -> None:
    data = random_bytes(70_000)
    s3.put_object(Bucket=bucket, Key="ckpt/step-1/shard.bin", Body=data)
    with open(bucket_dir / "ckpt" / "step-1" / "shard.bin", "rb") as fh:
        assert fh.read() == data


def test_key_ending_in_slash_is_a_directory_marker(s3, bucket: str, bucket_dir: Path) -> None:
    s3.put_object(Bucket=bucket, Key="folder/", Body=b"")
    assert (bucket_dir / "folder").is_dir()
    assert list_keys(s3, bucket) == ["folder/"]
    s3.put_object(Bucket=bucket, Key="folder/inside.txt", Body=b"x")
    assert list_keys(s3, bucket) == ["folder/", "folder/inside.txt"]


def test_listings_hide_internal_state_while_a_multipart_upload_is_in_progress(
    s3, bucket: str, bucket_dir: Path
) -> None:
    s3.put_object(Bucket=bucket, Key="visible.txt", Body=b"v")
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="pending.bin")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="pending.bin", UploadId=upload_id, PartNumber=1, Body=b"p" * 1024)

    assert list_keys(s3, bucket) == ["visible.txt"]
    assert list_keys(s3, bucket, Prefix=".") == []
    listed = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert listed.get("CommonPrefixes", []) == []
    assert [o["Key"] for o in listed["Contents"]] == ["visible.txt"]
    # Nothing but the published object sits among the user's files.
    assert snapshot(bucket_dir).keys() == {"visible.txt"}

    uploads = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in uploads] == [("pending.bin", upload_id)]
    s3.abort_multipart_upload(Bucket=bucket, Key="pending.bin", UploadId=upload_id)


def test_listings_hide_a_put_whose_body_is_still_arriving(
    gateway: GatewayProcess, credentials: Credentials, s3, bucket: str, bucket_dir: Path
) -> None:
    data = random_bytes(2 * 1024 * 1024)
    path = f"/{bucket}/arriving.bin"
    host = f"127.0.0.1:{gateway.port}"
    signed = sign(
        credentials,
        "PUT",
        f"http://{host}{path}",
        {"Host": host, "Content-Length": str(len(data))},
        content_sha256="UNSIGNED-PAYLOAD",
    )
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=60)
    try:
        conn.putrequest("PUT", path, skip_host=True, skip_accept_encoding=True)
        for name, value in signed.headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        conn.send(data[: len(data) // 2])

        assert list_keys(s3, bucket) == []
        assert snapshot(bucket_dir) == {}

        conn.send(data[len(data) // 2 :])
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
    finally:
        conn.close()
    assert list_keys(s3, bucket) == ["arriving.bin"]
    assert (bucket_dir / "arriving.bin").read_bytes() == data


def test_internal_directory_is_not_addressable(
    gateway: GatewayProcess, credentials: Credentials, s3, bucket: str, bucket_dir: Path
) -> None:
    s3.put_object(Bucket=bucket, Key="x", Body=b"x")
    before = snapshot(bucket_dir)
    put = signed_request(
        gateway.port, credentials, "PUT", f"/{bucket}/.aifgw/planted", body=b"evil", content_sha256="UNSIGNED-PAYLOAD"
    )
    assert put.status == 400, put.body
    assert put.error()["Code"] == "InvalidArgument"
    get = signed_request(gateway.port, credentials, "GET", f"/{bucket}/.aifgw/planted")
    assert get.status in (400, 404), get.body
    assert not (bucket_dir / ".aifgw" / "planted").exists()
    assert snapshot(bucket_dir) == before
