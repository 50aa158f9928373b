"""Where the gateway's CPU goes per small request: an in-process cProfile of HEAD/GET.

    .venv/bin/python perf/request_profile.py [HEAD|GET] [--requests N] [--top K]

Runs the real aiohttp app over a real FsStore on a temp directory of 4 KiB objects, drives it
with botocore-signed requests from an aiohttp client in the same process (16 in flight), and
prints requests per second (client and server together, under the profiler: compare runs of
this program only) and the functions with the most cumulative time. A program, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import os
import pstats
import tempfile
import time
from pathlib import Path

import aiohttp
import uvloop
from aiohttp import web
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from aif_gateway.identity import Identity, IdentityTable
from aif_gateway.s3.app import make_app
from aif_gateway.store.fs import FsStore

OBJECTS = 100
PORT = 9777


def signed_headers(method: str, url: str) -> dict[str, str]:
    request = AWSRequest(method=method, url=url, headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
    S3SigV4Auth(Credentials("k", "s"), "s3", "us-east-1").add_auth(request)
    return dict(request.headers)


async def profile(method: str, n: int) -> tuple[float, cProfile.Profile]:
    root = Path(tempfile.mkdtemp())
    (root / "bkt").mkdir()
    for i in range(OBJECTS):
        (root / "bkt" / f"o{i}").write_bytes(os.urandom(4096))
    app = make_app(FsStore(root), IdentityTable([Identity("admin", "k", "s", admin=True)]))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", PORT).start()
    urls = [f"http://127.0.0.1:{PORT}/bkt/o{i % OBJECTS}" for i in range(n)]
    headers = [signed_headers(method, u) for u in urls]
    in_flight = asyncio.Semaphore(16)
    profiler = cProfile.Profile()
    async with aiohttp.ClientSession() as session:

        async def one(url: str, hdrs: dict[str, str]) -> None:
            async with in_flight, session.request(method, url, headers=hdrs) as resp:
                await resp.read()
                assert resp.status == 200, resp.status

        started = time.perf_counter()
        profiler.enable()
        await asyncio.gather(*(one(u, h) for u, h in zip(urls, headers)))
        profiler.disable()
        rate = n / (time.perf_counter() - started)
    await runner.cleanup()
    return rate, profiler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("method", nargs="?", default="HEAD", choices=["HEAD", "GET"])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rate, profiler = uvloop.run(profile(args.method, args.requests))
    print(f"{args.method}: {rate:,.0f} requests/s (client + server in one process, under cProfile)")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
