"""awscli: the high-level ``s3`` commands and the ``s3api`` ones."""

from __future__ import annotations

import json
from pathlib import Path

from .gateway import GatewayProcess
from .helpers import MiB, file_sha256, list_keys, run_tool, write_random_file


def aws(gateway: GatewayProcess, env: dict[str, str], *args: str) -> str:
    return run_tool("aws", "--endpoint-url", gateway.url, *args, env=env)


def test_cp_ls_rm(gateway: GatewayProcess, cli_env, bucket: str, s3, tmp_path: Path) -> None:
    digest = write_random_file(tmp_path / "small.txt", 10_000)
    aws(gateway, cli_env, "s3", "cp", str(tmp_path / "small.txt"), f"s3://{bucket}/docs/small.txt")

    listing = aws(gateway, cli_env, "s3", "ls", f"s3://{bucket}/docs/")
    assert "small.txt" in listing and "10000" in listing

    aws(gateway, cli_env, "s3", "cp", f"s3://{bucket}/docs/small.txt", str(tmp_path / "back.txt"))
    assert file_sha256(tmp_path / "back.txt") == digest

    aws(gateway, cli_env, "s3", "rm", f"s3://{bucket}/docs/small.txt")
    assert list_keys(s3, bucket) == []


def test_multipart_cp_above_threshold(gateway: GatewayProcess, cli_env, bucket: str, s3, tmp_path: Path) -> None:
    digest = write_random_file(tmp_path / "big.bin", 20 * MiB)
    aws(gateway, cli_env, "s3", "cp", str(tmp_path / "big.bin"), f"s3://{bucket}/big.bin")
    assert s3.head_object(Bucket=bucket, Key="big.bin")["ETag"].endswith('-3"')
    aws(gateway, cli_env, "s3", "cp", f"s3://{bucket}/big.bin", str(tmp_path / "back.bin"))
    assert file_sha256(tmp_path / "back.bin") == digest


def test_sync_uploads_then_mirrors_deletions(gateway: GatewayProcess, cli_env, bucket: str, s3, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for rel in ("a.txt", "sub/b.txt", "sub/deeper/c.txt"):
        write_random_file(src / rel, 2048)
    aws(gateway, cli_env, "s3", "sync", str(src), f"s3://{bucket}/tree")
    assert list_keys(s3, bucket) == ["tree/a.txt", "tree/sub/b.txt", "tree/sub/deeper/c.txt"]

    # A second sync with nothing changed must upload nothing (sizes and mtimes match).
    second = aws(gateway, cli_env, "s3", "sync", str(src), f"s3://{bucket}/tree")
    assert "upload:" not in second

    (src / "sub" / "b.txt").unlink()
    aws(gateway, cli_env, "s3", "sync", "--delete", str(src), f"s3://{bucket}/tree")
    assert list_keys(s3, bucket) == ["tree/a.txt", "tree/sub/deeper/c.txt"]

    dst = tmp_path / "dst"
    aws(gateway, cli_env, "s3", "sync", f"s3://{bucket}/tree", str(dst))
    assert file_sha256(dst / "sub/deeper/c.txt") == file_sha256(src / "sub/deeper/c.txt")

    aws(gateway, cli_env, "s3", "rm", "--recursive", f"s3://{bucket}/tree")
    assert list_keys(s3, bucket) == []


def test_s3api_object_calls(gateway: GatewayProcess, cli_env, bucket: str, tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_text('{"hello": "world"}')
    aws(
        gateway,
        cli_env,
        "s3api",
        "put-object",
        "--bucket",
        bucket,
        "--key",
        "j/o.json",
        "--body",
        str(body),
        "--content-type",
        "application/json",
        "--metadata",
        "k=v",
    )
    head = json.loads(aws(gateway, cli_env, "s3api", "head-object", "--bucket", bucket, "--key", "j/o.json"))
    assert head["ContentLength"] == body.stat().st_size
    assert head["ContentType"] == "application/json"
    assert head["Metadata"] == {"k": "v"}

    listed = json.loads(aws(gateway, cli_env, "s3api", "list-objects-v2", "--bucket", bucket))
    assert [o["Key"] for o in listed["Contents"]] == ["j/o.json"]

    out = tmp_path / "out.json"
    aws(gateway, cli_env, "s3api", "get-object", "--bucket", bucket, "--key", "j/o.json", str(out))
    assert out.read_text() == body.read_text()

    aws(gateway, cli_env, "s3api", "delete-object", "--bucket", bucket, "--key", "j/o.json")
    listed = json.loads(aws(gateway, cli_env, "s3api", "list-objects-v2", "--bucket", bucket))
    assert listed.get("KeyCount", 0) == 0
