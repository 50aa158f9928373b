"""GET throughput and CPU cost of the two body paths: sendfile (AIF_SENDFILE=1) and copying (=0).

    .venv/bin/python perf/get_paths.py [--dir /dev/shm] [--size-gib 1] [--gets 8] [--parallel 4]
                                       [--workers 2]

Lays one object on ``--dir`` (default /dev/shm: a tmpfs, so the gateway's own cost shows, not
the disk's), then for each path starts a gateway on it, GETs the object ``--gets`` times with
``--parallel`` curl processes writing to /dev/null, and prints GiB/s and the CPU seconds per GiB
served spent by the gateway's processes (master and workers, user + system, from
/proc/<pid>/stat, as ``servers.Server.cpu_seconds`` counts them), then the ratios of the two
paths. One warm-up GET per path is not counted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.config import Config
from servers import Credentials, gateway

GiB = 1 << 30
BUCKET, KEY = "bench", "object"


@dataclass(frozen=True)
class Result:
    path: str
    gib_per_s: float
    cpu_s_per_gib: float


def presigned_get(url: str, creds: Credentials) -> str:
    s3 = boto3.session.Session().client(
        "s3",
        endpoint_url=url,
        aws_access_key_id=creds.access_key,
        aws_secret_access_key=creds.secret_key,
        config=Config(region_name="us-east-1", signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    return s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": KEY}, ExpiresIn=3600)


def curl_get(url: str, size: int) -> None:
    done = subprocess.run(
        ["curl", "-sS", "-f", "-o", "/dev/null", "-w", "%{size_download}", url], capture_output=True, text=True
    )
    if done.returncode != 0 or int(done.stdout or 0) != size:
        raise SystemExit(f"curl GET failed ({done.returncode}, {done.stdout} bytes): {done.stderr}")


def measure(work: Path, size: int, args: argparse.Namespace, sendfile: bool) -> Result:
    creds = Credentials()
    server = gateway(work / "root", work, creds, args.workers)
    server.env["AIF_SENDFILE"] = "1" if sendfile else "0"
    server.start()
    try:
        url = presigned_get(server.url, creds)
        curl_get(url, size)  # warm-up: page cache, worker imports
        cpu_before, start = server.cpu_seconds(), time.perf_counter()
        with ThreadPoolExecutor(args.parallel) as pool:
            list(pool.map(lambda _: curl_get(url, size), range(args.gets)))
        wall, cpu = time.perf_counter() - start, server.cpu_seconds() - cpu_before
    finally:
        server.stop()
    served_gib = args.gets * size / GiB
    return Result("sendfile" if sendfile else "copy", served_gib / wall, cpu / served_gib)


def lay_object(root: Path, size: int) -> None:
    """A bucket is a directory of the root and an object a file in it (one namespace)."""
    (root / BUCKET).mkdir(parents=True)
    block = os.urandom(64 << 20)
    with open(root / BUCKET / KEY, "wb") as fh:
        for _ in range(size // len(block)):
            fh.write(block)
        fh.write(block[: size % len(block)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path("/dev/shm"))
    parser.add_argument("--size-gib", type=float, default=1.0)
    parser.add_argument("--gets", type=int, default=8)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    size = int(args.size_gib * GiB)
    work = Path(tempfile.mkdtemp(prefix="aif-get-paths-", dir=args.dir))
    try:
        lay_object(work / "root", size)
        results = [measure(work, size, args, sendfile) for sendfile in (True, False)]
    finally:
        shutil.rmtree(work)
    print(
        f"GET {args.gets} x {size / GiB:g} GiB, {args.parallel} curl in parallel, "
        f"{args.workers} gateway workers, object on {args.dir} ({os.cpu_count()} CPUs)"
    )
    print(f"{'path':<10}{'GiB/s':>10}{'CPU s/GiB':>12}")
    for r in results:
        print(f"{r.path:<10}{r.gib_per_s:>10.2f}{r.cpu_s_per_gib:>12.3f}")
    fast, slow = results
    print(
        f"sendfile/copy: throughput x{fast.gib_per_s / slow.gib_per_s:.2f}, "
        f"CPU per GiB x{fast.cpu_s_per_gib / slow.cpu_s_per_gib:.2f}"
    )


if __name__ == "__main__":
    main()
