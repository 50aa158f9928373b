"""The stage's fast S3 path against the real gateway: set up from the environment alone (no
botocore loaded), many small objects fetched in batches, large objects split into ranges (each
result compared with its botocore counterpart's), and resumed from a journal."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import xxhash

from aif_gateway.stage import StageOptions, list_sources
from aif_gateway.stage.state.journal import Journal
from aif_gateway.stage.state.statedir import StageDir

from .gateway import Credentials, GatewayProcess
from .helpers import MiB, random_bytes
from .stage_support import ok, s3_env, stage, tree

PART = 5 * MiB


def test_a_stage_configured_by_the_environment_never_loads_botocore_sessions(
    s3, bucket: str, gateway: GatewayProcess, credentials: Credentials, tmp_path: Path
) -> None:
    s3.put_object(Bucket=bucket, Key="env/a.bin", Body=b"abc")
    env = {**s3_env(gateway, credentials), "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_REGION": "us-east-1"}
    code = (
        "import runpy, sys; sys.argv = ['aif-gateway', 'stage', 'in', sys.argv[1], '--to', sys.argv[2], "
        "'--json']\ntry:\n    runpy.run_module('aif_gateway', run_name='__main__')\nexcept SystemExit as e:\n"
        "    print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('aiobotocore', 'aiohttp'))))"
        "\n    raise"
    )
    proc = subprocess.run(
        [sys.executable, "-c", "import json\n" + code, f"s3://{bucket}/env/", str(tmp_path / "d")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    report, loaded = (json.loads(line) for line in proc.stdout.strip().splitlines()[-2:])
    assert report["ok"] and report["files"] == 1 and loaded == []
    assert (tmp_path / "d" / "a.bin").read_bytes() == b"abc"


def test_many_small_and_a_few_large_objects_match_the_botocore_path(
    s3, bucket: str, bucket_dir: Path, gateway: GatewayProcess, credentials: Credentials, tmp_path: Path
) -> None:
    objects = {f"mix/small/{i:03d}": random_bytes(i * 97) for i in range(150)}
    for key, data in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data)  # MD5 ETags: each checked against its MD5
    for name, size in (("a", 12 * MiB + 7), ("b", 5 * MiB)):
        data = random_bytes(size)
        (bucket_dir / "mix" / "large").mkdir(parents=True, exist_ok=True)
        (bucket_dir / "mix" / "large" / name).write_bytes(data)  # foreign ETags: size + If-Match
        objects[f"mix/large/{name}"] = data
    expected = {key[4:]: hashlib.sha256(data).hexdigest() for key, data in objects.items()}
    env = s3_env(gateway, credentials)
    reports = {}
    for reader in ("", "botocore"):
        dest = tmp_path / (reader or "fast")
        reports[reader] = ok(
            stage(
                "in",
                f"s3://{bucket}/mix/",
                "--to",
                dest,
                "--json",
                "--part-size",
                "5M",
                "--jobs",
                "4",
                env={**env, "AIF_STAGE_S3_GET": reader},
            )
        )
        assert tree(dest) == expected
    fast, botocore = (
        [
            {k: v for k, v in f.items() if k != "dest_mtime_ns"}
            for f in json.loads((tmp_path / d / ".aifstage" / "manifest.json").read_text())["files"]
        ]
        for d in ("fast", "botocore")
    )
    assert fast == botocore  # the same xxh3 of every file, whichever way it came
    for report in reports.values():
        assert report["files"] == len(objects) and report["verified"] == {"md5": 150, "size+etag": 2}


def test_a_range_split_object_resumes_from_its_journaled_ranges(
    bucket: str, bucket_dir: Path, gateway: GatewayProcess, credentials: Credentials, tmp_path: Path
) -> None:
    data = random_bytes(3 * PART + 999)
    (bucket_dir / "res").mkdir()
    (bucket_dir / "res" / "big.bin").write_bytes(data)
    env = s3_env(gateway, credentials)
    options = StageOptions(
        endpoint_url=gateway.url, access_key=credentials.access_key, secret_key=credentials.secret_key, part_size=PART
    )
    [entry] = list_sources([f"s3://{bucket}/res/"], options)
    dest = tmp_path / "dest"
    # What a stage killed after its second range leaves: that range in place, and journaled.
    sd = StageDir(dest)
    sd.partial_dir.mkdir(parents=True)
    with open(sd.partial_path("big.bin"), "wb") as fh:
        fh.truncate(len(data))
        fh.seek(PART)
        fh.write(data[PART : 2 * PART])
    journal = Journal(sd.journal_path, dest)
    journal.open()
    journal.add_range(
        "big.bin", entry.source_id, len(data), PART, PART, 2 * PART, xxhash.xxh3_64_hexdigest(data[PART : 2 * PART])
    )
    journal.flush()
    journal.close()
    report = ok(stage("in", f"s3://{bucket}/res/", "--to", dest, "--json", "--part-size", "5M", env=env))
    assert report["skipped_bytes"] == PART and report["bytes"] == len(data) - PART
    assert (dest / "big.bin").read_bytes() == data and report["verified"] == {"size+etag": 1}
