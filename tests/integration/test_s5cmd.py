"""s5cmd: wildcard copies, listing, removal and cat."""

from __future__ import annotations

from pathlib import Path

from .gateway import GatewayProcess
from .helpers import MiB, file_sha256, list_keys, run_tool, write_random_file


def s5cmd(gateway: GatewayProcess, env: dict[str, str], *args: str) -> str:
    return run_tool("s5cmd", "--endpoint-url", gateway.url, *args, env=env)


def test_wildcard_cp_ls_cat_rm(gateway: GatewayProcess, cli_env, bucket: str, s3, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for name in ("a.csv", "b.csv", "skip.txt"):
        write_random_file(src / name, 500)
    (src / "note.csv").write_text("hello from s5cmd\n")
    s5cmd(gateway, cli_env, "cp", f"{src}/*.csv", f"s3://{bucket}/in/")
    assert list_keys(s3, bucket) == ["in/a.csv", "in/b.csv", "in/note.csv"]

    listing = s5cmd(gateway, cli_env, "ls", f"s3://{bucket}/in/*")
    names = sorted(line.split()[-1].rsplit("/", 1)[-1] for line in listing.splitlines())
    assert names == ["a.csv", "b.csv", "note.csv"]

    assert s5cmd(gateway, cli_env, "cat", f"s3://{bucket}/in/note.csv") == "hello from s5cmd\n"

    s5cmd(gateway, cli_env, "cp", f"s3://{bucket}/in/*", f"{tmp_path}/down/")
    assert file_sha256(tmp_path / "down" / "a.csv") == file_sha256(src / "a.csv")

    s5cmd(gateway, cli_env, "rm", f"s3://{bucket}/in/*")
    assert list_keys(s3, bucket) == []


def test_multipart_cp_reads_back_byte_exact(gateway: GatewayProcess, cli_env, bucket: str, s3, tmp_path: Path) -> None:
    digest = write_random_file(tmp_path / "big.bin", 12 * MiB)
    # --part-size is in MiB: 5 MiB parts make three of a 12 MiB file.
    s5cmd(gateway, cli_env, "cp", "--part-size", "5", str(tmp_path / "big.bin"), f"s3://{bucket}/big.bin")
    assert s3.head_object(Bucket=bucket, Key="big.bin")["ETag"].endswith('-3"')
    s5cmd(gateway, cli_env, "cp", f"s3://{bucket}/big.bin", str(tmp_path / "back.bin"))
    assert file_sha256(tmp_path / "back.bin") == digest
