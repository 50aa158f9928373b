"""The README's checkpointing example runs as printed, on the filesystem and over S3."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def example() -> str:
    text = README.read_text()
    match = re.search(r"<!-- ckpt-example -->\n```python\n(.*?)```", text, re.S)
    assert match, "README lost its checkpoint example"
    return match.group(1)


@pytest.mark.parametrize("via", ["filesystem", "s3"])
def test_readme_training_loop(gateway, gateway_root, credentials, tmp_path, via):
    bucket = gateway_root / "ckpt"
    bucket.mkdir(exist_ok=True)  # "mkdir -p aif-data/ckpt": a bucket is a directory
    script = tmp_path / "train.py"
    script.write_text(example())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AIF_GATEWAY"))}
    env.update(
        AWS_ENDPOINT_URL=gateway.url,
        AWS_ACCESS_KEY_ID=credentials.access_key,
        AWS_SECRET_ACCESS_KEY=credentials.secret_key,
    )
    if via == "filesystem":
        env["AIF_GATEWAY_ROOT"] = str(gateway_root)
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:4]] == ["step 50", "step 100", "step 150", "step 200"]
    assert f"via {via} to" in lines[4]
    assert lines[-1] == "resumed at step 200"
    assert sorted(p.name for p in (bucket / "demo/step-200").iterdir()) == [
        ".metadata",
        "__0_0.distcp",
        "__0_1.distcp",
        "aif-manifest.json",
    ]
