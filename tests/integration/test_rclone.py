"""rclone, configured only through ``RCLONE_CONFIG_AIF_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from .helpers import MiB, file_sha256, list_keys, run_tool, write_random_file

# Multipart from 5 MiB with 5 MiB parts, so a 12 MiB file goes up in three parts.
MULTIPART = ("--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M")


def rclone(env: dict[str, str], *args: str) -> str:
    return run_tool("rclone", *args, env=env)


def test_copy_lsf_and_check_download(cli_env, bucket: str, s3, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_random_file(src / "one.bin", 1000)
    write_random_file(src / "nested/two.bin", 3000)
    rclone(cli_env, "copy", str(src), f"aif:{bucket}/data")

    assert sorted(rclone(cli_env, "lsf", "-R", f"aif:{bucket}/data").split()) == [
        "nested/",
        "nested/two.bin",
        "one.bin",
    ]
    # --download compares the bytes themselves, not just hashes.
    rclone(cli_env, "check", "--download", str(src), f"aif:{bucket}/data")
    rclone(cli_env, "check", str(src), f"aif:{bucket}/data")
    assert list_keys(s3, bucket) == ["data/nested/two.bin", "data/one.bin"]


def test_multipart_copy_reads_back_byte_exact(cli_env, bucket: str, s3, tmp_path: Path) -> None:
    src = tmp_path / "src"
    digest = write_random_file(src / "big.bin", 12 * MiB)
    rclone(cli_env, "copy", *MULTIPART, str(src), f"aif:{bucket}")
    assert s3.head_object(Bucket=bucket, Key="big.bin")["ETag"].endswith('-3"')

    rclone(cli_env, "copy", f"aif:{bucket}/big.bin", str(tmp_path / "back"))
    assert file_sha256(tmp_path / "back" / "big.bin") == digest
    rclone(cli_env, "check", "--download", str(src), f"aif:{bucket}")


def test_sync_mirrors_deletions(cli_env, bucket: str, s3, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for name in ("a", "b", "c"):
        write_random_file(src / f"{name}.txt", 100)
    rclone(cli_env, "sync", str(src), f"aif:{bucket}/mirror")
    (src / "b.txt").unlink()
    write_random_file(src / "d.txt", 100)
    rclone(cli_env, "sync", str(src), f"aif:{bucket}/mirror")
    assert list_keys(s3, bucket) == ["mirror/a.txt", "mirror/c.txt", "mirror/d.txt"]
    rclone(cli_env, "check", "--download", str(src), f"aif:{bucket}/mirror")


def test_moveto_renames_an_object(cli_env, bucket: str, s3, tmp_path: Path) -> None:
    digest = write_random_file(tmp_path / "f.bin", 4096)
    rclone(cli_env, "copyto", str(tmp_path / "f.bin"), f"aif:{bucket}/old/name.bin")
    rclone(cli_env, "moveto", f"aif:{bucket}/old/name.bin", f"aif:{bucket}/new/name.bin")
    assert list_keys(s3, bucket) == ["new/name.bin"]
    rclone(cli_env, "copyto", f"aif:{bucket}/new/name.bin", str(tmp_path / "back.bin"))
    assert file_sha256(tmp_path / "back.bin") == digest
