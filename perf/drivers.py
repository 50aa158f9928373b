"""The clients: s5cmd and curl as external programs, and a small aiohttp driver.

s5cmd (Go, many workers) is the same client for both S3 servers. It cannot talk to nginx, so
the raw-limit GETs and the like-for-like GET/PUT rows use curl (C; ``--aws-sigv4`` signs for the
S3 servers). s5cmd reports only totals, so the per-request latencies (p50/p99) and the timing of
one CompleteMultipartUpload come from the aiohttp driver, the same code for every server.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from servers import Credentials, venv_tool
from sigv4 import Signer, uri_encode
from yarl import URL


class DriverError(RuntimeError):
    pass


def run_timed(command: Sequence[str], env: dict[str, str] | None = None) -> float:
    """Wall seconds of one command; a failure stops the run with the command's own words."""
    start = time.perf_counter()
    # Output discarded: GETs stream objects to stdout (``s5cmd cat``), never to a file.
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise DriverError(
            f"{command[0]} ... {command[-1]} exited {done.returncode}: {done.stderr.decode(errors='replace')[-2000:]}"
        )
    return elapsed


def run_parallel_timed(commands: Sequence[Sequence[str]]) -> float:
    """Wall seconds for several commands started together, until the last one ends."""
    start = time.perf_counter()
    procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for c in commands]
    errors = [(c, p.communicate()[1]) for c, p in zip(commands, procs) if p.wait() != 0]
    elapsed = time.perf_counter() - start
    if errors:
        command, stderr = errors[0]
        raise DriverError(f"{command[0]} ... {command[-1]} failed: {stderr.decode(errors='replace')[-2000:]}")
    return elapsed


class S5cmd:
    def __init__(self, endpoint: str, creds: Credentials, workers: int) -> None:
        self.base = [venv_tool("s5cmd"), "--endpoint-url", endpoint, "--numworkers", str(workers)]
        self.env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": creds.access_key,
            "AWS_SECRET_ACCESS_KEY": creds.secret_key,
            "AWS_REGION": "us-east-1",
        }

    def cp(self, source: str, destination: str) -> float:
        return run_timed([*self.base, "cp", source, destination], self.env)

    def cat(self, source: str) -> float:
        """Download to a discarded stdout. Not ``cp ... /dev/null``: s5cmd 2.3 running as root
        may rename its temp file over the destination, replacing /dev/null with a file."""
        return run_timed([*self.base, "cat", source], self.env)

    def run_file(self, commands: Path) -> float:
        """``s5cmd run FILE``: one line per operation, spread over the workers."""
        return run_timed([*self.base, "run", str(commands)], self.env)

    def count_keys(self, bucket: str) -> tuple[int, float]:
        """Keys under ``bucket`` by full ListObjectsV2 pagination (no delimiter), and the seconds."""
        start = time.perf_counter()
        done = subprocess.run([*self.base, "ls", f"s3://{bucket}/*"], capture_output=True, env=self.env)
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise DriverError(f"s5cmd ls failed: {done.stderr.decode(errors='replace')[-2000:]}")
        return done.stdout.count(b"\n"), elapsed


class Curl:
    """curl with SigV4 (UNSIGNED-PAYLOAD) for S3 servers, or plain for nginx (creds None)."""

    def __init__(self, creds: Credentials | None) -> None:
        self.base = ["curl", "-sS", "--fail", "--http1.1"]
        if creds is not None:
            self.base += [
                "--aws-sigv4",
                "aws:amz:us-east-1:s3",
                "--user",
                f"{creds.access_key}:{creds.secret_key}",
                "-H",
                "x-amz-content-sha256: UNSIGNED-PAYLOAD",
            ]

    def get_command(self, url: str) -> list[str]:
        return [*self.base, url]  # the body goes to stdout, which run_timed discards

    def put_command(self, path: Path, url: str) -> list[str]:
        return [*self.base, "-T", str(path), url]


@dataclass(frozen=True)
class OpStats:
    ops: int
    seconds: float
    latencies: list[float]

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds

    def percentile_ms(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class HttpDriver:
    """aiohttp with ``concurrency`` requests in flight on as many keep-alive connections."""

    def __init__(self, base_url: str, creds: Credentials | None, concurrency: int = 64) -> None:
        self.base_url = base_url
        self.signer = Signer(creds.access_key, creds.secret_key, URL(base_url).authority) if creds else None
        self.concurrency = concurrency

    def _session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.concurrency),
            timeout=aiohttp.ClientTimeout(total=None, sock_read=600),
            skip_auto_headers=("Content-Type",),
        )

    def _request_args(self, method: str, path: str, query: dict[str, str] | None = None) -> tuple[URL, dict]:
        headers = self.signer.headers(method, path, query) if self.signer else {}
        query_text = "&".join(
            f"{uri_encode(k, keep_slash=False)}={uri_encode(v, keep_slash=False)}" for k, v in (query or {}).items()
        )
        return URL(self.base_url + path + (f"?{query_text}" if query_text else ""), encoded=True), headers

    def ops(self, method: str, paths: Sequence[str], body: bytes | None = None) -> OpStats:
        return asyncio.run(self._ops(method, paths, body))

    async def _ops(self, method: str, paths: Sequence[str], body: bytes | None) -> OpStats:
        latencies: list[float] = []
        queue = iter(paths)

        async def worker(session: aiohttp.ClientSession) -> None:
            for path in queue:  # one shared iterator: each path goes to exactly one worker
                url, headers = self._request_args(method, path)
                begin = time.perf_counter()
                async with session.request(method, url, headers=headers, data=body) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise DriverError(f"{method} {path}: HTTP {resp.status}")
                latencies.append(time.perf_counter() - begin)

        async with self._session() as session:
            start = time.perf_counter()
            await asyncio.gather(*(worker(session) for _ in range(self.concurrency)))
            elapsed = time.perf_counter() - start
        return OpStats(len(latencies), elapsed, latencies)

    def multipart_complete_seconds(self, bucket: str, key: str, part: bytes, parts: int) -> float:
        """Upload ``parts`` copies of ``part`` as one multipart upload; time only the Complete."""
        return asyncio.run(self._multipart(f"/{bucket}/{key}", part, parts))

    async def _multipart(self, path: str, part: bytes, parts: int) -> float:
        async with self._session() as session:
            text = await self._call(session, "POST", path, {"uploads": ""})
            upload_id = _xml_field(text, "UploadId")
            etags = []
            for number in range(1, parts + 1):
                url, headers = self._request_args("PUT", path, {"partNumber": str(number), "uploadId": upload_id})
                async with session.put(url, headers=headers, data=part) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise DriverError(f"UploadPart {number}: HTTP {resp.status}")
                    etags.append(resp.headers["ETag"])
            body = (
                "<CompleteMultipartUpload>"
                + "".join(
                    f"<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>" for n, etag in enumerate(etags, 1)
                )
                + "</CompleteMultipartUpload>"
            )
            begin = time.perf_counter()
            text = await self._call(session, "POST", path, {"uploadId": upload_id}, body.encode())
            elapsed = time.perf_counter() - begin
            if "<Error>" in text:  # S3 may answer 200 and put the error in the body
                raise DriverError(f"CompleteMultipartUpload failed: {text[:500]}")
            return elapsed

    async def _call(
        self, session: aiohttp.ClientSession, method: str, path: str, query: dict[str, str], body: bytes | None = None
    ) -> str:
        url, headers = self._request_args(method, path, query)
        async with session.request(method, url, headers=headers, data=body) as resp:
            text = await resp.text()
            if resp.status != 200:
                raise DriverError(f"{method} {path}?{'&'.join(query)}: HTTP {resp.status}: {text[:500]}")
            return text


def _xml_field(text: str, name: str) -> str:
    found = re.search(f"<{name}>([^<]+)</{name}>", text)
    if not found:
        raise DriverError(f"no {name} in {text[:500]}")
    return found.group(1)
