"""``stage out`` to S3: upload the new or changed files of a tree, large ones as parallel
multipart uploads.

A local file is unchanged, and skipped, when the object under its key has the same size and
either carries ``x-amz-meta-aif-mtime`` equal to the file's mtime (what this command stores on
every upload; one HEAD per same-size object) or has the ETag the file would get (its MD5, or
the multipart ETag with ``--part-size`` parts). Every request carries Content-MD5, so the
server rejects a corrupted body; a file that changes while it is read fails the stage and its
multipart upload is aborted. Nothing half-written appears under the prefix: an unfinished
multipart upload is invisible to readers.

Resume: each multipart upload in flight is recorded (upload_state.py: upload id, part size, the
parts the server acknowledged, the file's size and mtime). A stage that fails or is stopped keeps
its uploads open; the next run of the same source to the same destination lists each recorded
upload's parts (ListParts), sends only the parts missing or differing from the record, and
completes it (resumed bytes count as ``skipped_bytes``). A file no longer the recorded version,
an upload the server no longer has, or a file found unchanged gets its old upload aborted and
its record dropped; a completed upload's record is dropped too.

Memory bound: part bodies are held in memory while they are sent; their total is capped at
``max(part_size, jobs x 16 MiB)`` (256 MiB at the defaults), whatever the part size.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...checksums import multipart_etag
from ...client import is_s3_url, list_objects, open_client, s3_errors, strip_etag, with_retries
from ...fsio import engine
from ..client_failures import client_setup, parse_s3_url, s3_error
from ..engine.plan import split_ranges
from ..engine.transfer import run_stage
from ..errors import StageError, from_os_error
from ..options import MiB, StageOptions
from ..progress import Progress, Report
from ..sources import Entry, alist_sources
from .upload_state import UploadRecord, UploadState, resumable_parts, state_dir

__all__ = ["MTIME_META", "stage_out"]

MTIME_META = "aif-mtime"
_BUDGET_PER_JOB = 16 * MiB
_MAX_PARTS = 10_000


async def stage_out(src: Path, dest: str, options: StageOptions) -> Report:
    """``dest``: an ``s3://`` URL, or a path (staged by the copy engine, ``transfer.run_stage``)."""
    report = Report("out", [str(src)], str(dest))
    if not is_s3_url(str(dest)):
        return await run_stage([str(src)], Path(dest), options, report)
    started = time.monotonic()
    try:
        await _Uploader(Path(src), str(dest), options, report).run()
        report.ok = True
        return report
    except StageError as exc:
        report.errors.append(str(exc))
        exc.report = report
        raise
    finally:
        report.finish(started)


class _Budget:
    """Bytes of part bodies in memory at once (one request always fits, however large)."""

    def __init__(self, limit: int) -> None:
        self._limit, self._used = limit, 0
        self._cond = asyncio.Condition()

    async def acquire(self, n: int) -> None:
        async with self._cond:
            await self._cond.wait_for(lambda: self._used == 0 or self._used + n <= self._limit)
            self._used += n

    async def release(self, n: int) -> None:
        async with self._cond:
            self._used -= n
            self._cond.notify_all()


@dataclass
class _Multipart:
    entry: Entry
    key: str
    parts: list[tuple[int, int]]
    part_size: int
    upload_id: str | None = None
    etags: dict[int, str] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    completed: bool = False
    source_changed: bool = False  # abort it: a re-run must not resume a version that is gone

    def missing(self) -> list[int]:
        return [n for n in range(1, len(self.parts) + 1) if n not in self.etags]


def _read(entry: Entry, start: int, length: int) -> tuple[bytes, bytes]:
    """Bytes [start, start+length) of a local file and their MD5; the file must be unchanged."""
    try:
        fd = os.open(entry.url, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise from_os_error(exc, entry.url, "opening the file to upload", source=True) from None
    try:
        chunks, got = [], 0
        while got < length:
            chunk = os.pread(fd, length - got, start + got)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        st = os.fstat(fd)
    except OSError as exc:
        raise from_os_error(exc, entry.url, "reading the file to upload", source=True) from None
    finally:
        os.close(fd)
    if got != length or st.st_size != entry.size or st.st_mtime_ns != entry.mtime_ns:
        raise StageError(
            "verify",
            f"{entry.url} changed while it was being uploaded; nothing of it was "
            "published: re-run to upload the new version",
            entry.url,
        )
    data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    hasher = engine.Hasher([])
    hasher.update(data)
    return data, hasher.digests()["MD5"]


def _local_etag(entry: Entry, part_size: int) -> str:
    """The ETag an upload of this file by this command would get."""
    if entry.size <= part_size:
        return _read(entry, 0, entry.size)[1].hex()
    return multipart_etag([_read(entry, s, e - s)[1] for s, e in split_ranges(entry.size, part_size)])


class _Uploader:
    state: UploadState  # set once the client is open: the state is keyed by its endpoint

    def __init__(self, src: Path, dest: str, options: StageOptions, report: Report) -> None:
        self.src, self.dest, self.options, self.report = src, dest, options, report
        self.bucket, prefix = parse_s3_url(dest)
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.budget = _Budget(max(options.part_size, options.jobs * _BUDGET_PER_JOB))
        self.error: Exception | None = None
        self.client: Any = None
        self.progress: Progress | None = None

    def _retry(self) -> None:
        self.report.retries += 1

    async def _call(self, what: str, url: str, fn: Any, **kwargs: Any) -> Any:
        try:
            return await with_retries(lambda: fn(**kwargs), self.options.retries, self._retry)
        except s3_errors() as exc:
            raise s3_error(exc, url, what) from None

    async def run(self) -> None:
        entries = await alist_sources([str(self.src)], self.options)
        async with contextlib.AsyncExitStack() as stack:
            with client_setup():
                self.client = await stack.enter_async_context(open_client(self.options, self.options.jobs))
            self.state = UploadState(
                state_dir(self.client.meta.endpoint_url, f"s3://{self.bucket}/{self.prefix}", self.src)
            )
            await asyncio.to_thread(self.state.open)
            try:
                await self._upload(entries)
            finally:
                await asyncio.to_thread(self.state.close)

    async def _upload(self, entries: list[Entry]) -> None:
        remote: dict[str, tuple[int, str | None]] = {}
        try:
            async for obj in list_objects(self.client, self.bucket, self.prefix, self.options.retries, self._retry):
                remote[obj["Key"]] = (int(obj["Size"]), strip_etag(obj.get("ETag")))
        except s3_errors() as exc:
            raise await self._as_error(exc) from None
        todo = await self._changed(entries, remote)
        self.report.skipped_files = len(entries) - len(todo)
        self.report.skipped_bytes = sum(e.size for e in entries) - sum(e.size for e in todo)
        records = await asyncio.to_thread(self.state.records)
        units: deque[Any] = deque()
        uploads: list[_Multipart] = []
        for entry in sorted(todo, key=lambda e: -e.size):
            if entry.size > self.options.part_size:
                upload = await self._resume_or_new(entry, records.pop(self._key(entry), None))
                uploads.append(upload)
                missing = upload.missing()
                if missing:
                    units.extend((upload, n) for n in missing)
                else:
                    units.append((upload, None))  # every part landed before: complete it
            else:
                units.append(entry)
        # What is left was recorded for files now unchanged, small enough for one PUT, or gone.
        await asyncio.gather(*(self._forget(record.key, record.upload_id) for record in records.values()))
        resumed = self.report.skipped_bytes - (sum(e.size for e in entries) - sum(e.size for e in todo))
        self.progress = Progress(len(todo), sum(e.size for e in todo) - resumed, self.options, "out")
        ticker = asyncio.create_task(self.progress.run())
        try:
            workers = min(self.options.jobs, len(units)) or 1
            await asyncio.gather(*(self._worker(units) for _ in range(workers)))
        finally:
            ticker.cancel()
            self.progress.close()
            # Other unfinished uploads stay open, recorded, for the next run to resume.
            await asyncio.gather(
                *(
                    self._forget(u.key, u.upload_id)
                    for u in uploads
                    if u.source_changed and u.upload_id is not None and not u.completed
                )
            )
        if self.error is not None:
            raise self.error

    async def _resume_or_new(self, entry: Entry, record: UploadRecord | None) -> _Multipart:
        key = self._key(entry)
        if record is not None:
            listed = await self._list_parts(key, record.upload_id)
            keep = resumable_parts(record, entry.size, entry.mtime_ns, listed)
            if keep is not None:
                upload = _Multipart(
                    entry,
                    key,
                    split_ranges(entry.size, record.part_size),
                    record.part_size,
                    record.upload_id,
                    {n: f'"{etag}"' for n, etag in keep.items()},
                )
                self.report.skipped_bytes += sum(upload.parts[n - 1][1] - upload.parts[n - 1][0] for n in keep)
                return upload
            await self._forget(key, record.upload_id)
        part_size = self._part_size(entry)
        return _Multipart(entry, key, split_ranges(entry.size, part_size), part_size)

    async def _list_parts(self, key: str, upload_id: str) -> dict[int, tuple[str, int]] | None:
        """ListParts of an upload (number -> (ETag, size)); None when the server no longer has it."""
        listed: dict[int, tuple[str, int]] = {}
        marker = 0
        while True:
            try:
                page = await with_retries(
                    lambda: self.client.list_parts(
                        Bucket=self.bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumberMarker=marker,  # noqa: B023 (awaited here)
                    ),
                    self.options.retries,
                    self._retry,
                )
            except s3_errors() as exc:
                if _error_code(exc) in ("NoSuchUpload", "NoSuchKey", "404"):
                    return None
                raise s3_error(exc, f"s3://{self.bucket}/{key}", "listing the parts of an unfinished upload") from None
            for part in page.get("Parts", ()):
                listed[int(part["PartNumber"])] = (strip_etag(part.get("ETag")) or "", int(part["Size"]))
            if not page.get("IsTruncated"):
                return listed
            marker = int(page["NextPartNumberMarker"])

    async def _save(self, fn: Any, *args: Any) -> None:
        """A change to the stage-out state, off the event loop; its OSError as a stage error."""
        try:
            await asyncio.to_thread(fn, *args)
        except OSError as exc:
            raise from_os_error(exc, str(self.state.path), "recording the upload for a resume", source=False) from None

    async def _as_error(self, exc: BaseException) -> StageError:
        error = s3_error(exc, self.dest, "listing the destination")
        if error.kind == "source_missing":
            return StageError(
                "usage", f"{self.dest}: the destination bucket does not exist; create it first", self.dest
            )
        return error

    def _part_size(self, entry: Entry) -> int:
        # S3 allows 10,000 parts: a file too large for --part-size gets larger parts.
        part = self.options.part_size
        while -(-entry.size // part) > _MAX_PARTS:
            part *= 2
        return part

    def _key(self, entry: Entry) -> str:
        return self.prefix + entry.rel_path

    async def _changed(self, entries: list[Entry], remote: dict[str, tuple[int, str | None]]) -> list[Entry]:
        sem = asyncio.Semaphore(self.options.jobs)

        async def differs(entry: Entry) -> bool:
            size, etag = remote.get(self._key(entry), (None, None))
            if size != entry.size:
                return True
            async with sem:
                url = f"s3://{self.bucket}/{self._key(entry)}"
                try:
                    head = await self._call(
                        "comparing with the destination",
                        url,
                        self.client.head_object,
                        Bucket=self.bucket,
                        Key=self._key(entry),
                    )
                except StageError as exc:
                    if exc.kind == "source_missing":
                        return True  # deleted since the listing
                    raise
                if head.get("Metadata", {}).get(MTIME_META) == str(entry.mtime_ns):
                    return False
                local = await asyncio.to_thread(_local_etag, entry, self._part_size(entry))
                return local != etag

        flags = await asyncio.gather(*(differs(e) for e in entries))
        return [e for e, changed in zip(entries, flags) if changed]

    async def _worker(self, units: deque[Any]) -> None:
        while units and self.error is None:
            unit = units.popleft()
            try:
                if isinstance(unit, Entry):
                    await self._put(unit)
                else:
                    await self._part(*unit)
            except Exception as exc:  # StageError, or a bug: either way the others stop too
                if self.error is None:
                    self.error = exc
                return

    async def _put(self, entry: Entry) -> None:
        await self.budget.acquire(entry.size)
        try:
            data, md5 = await asyncio.to_thread(_read, entry, 0, entry.size)
            url = f"s3://{self.bucket}/{self._key(entry)}"
            await self._call(
                "uploading",
                url,
                self.client.put_object,
                Bucket=self.bucket,
                Key=self._key(entry),
                Body=data,
                ContentMD5=base64.b64encode(md5).decode(),
                Metadata={MTIME_META: str(entry.mtime_ns)},
            )
        finally:
            await self.budget.release(entry.size)
        self._uploaded(entry.size, entry.size)

    def _uploaded(self, nbytes: int, file_bytes: int | None) -> None:
        assert self.progress is not None
        self.report.bytes += nbytes
        self.progress.add(nbytes, files=1 if file_bytes is not None else 0)
        if file_bytes is not None:
            self.report.files += 1
            self.report.verified["md5"] = self.report.verified.get("md5", 0) + 1

    async def _part(self, upload: _Multipart, number: int | None) -> None:
        """Send part ``number`` (None: every part is already there), and complete the upload
        after its last part."""
        url = f"s3://{self.bucket}/{upload.key}"
        if number is not None:
            async with upload.lock:
                if upload.upload_id is None:
                    created = await self._call(
                        "starting a multipart upload",
                        url,
                        self.client.create_multipart_upload,
                        Bucket=self.bucket,
                        Key=upload.key,
                        Metadata={MTIME_META: str(upload.entry.mtime_ns)},
                    )
                    upload.upload_id = created["UploadId"]
                    await self._save(
                        self.state.start,
                        UploadRecord(
                            upload.key, upload.upload_id, upload.entry.size, upload.entry.mtime_ns, upload.part_size
                        ),
                    )
            start, end = upload.parts[number - 1]
            await self.budget.acquire(end - start)
            try:
                try:
                    data, md5 = await asyncio.to_thread(_read, upload.entry, start, end - start)
                except StageError as exc:
                    upload.source_changed = exc.kind == "verify"
                    raise
                answer = await self._call(
                    "uploading a part",
                    url,
                    self.client.upload_part,
                    Bucket=self.bucket,
                    Key=upload.key,
                    UploadId=upload.upload_id,
                    PartNumber=number,
                    Body=data,
                    ContentMD5=base64.b64encode(md5).decode(),
                )
            finally:
                await self.budget.release(end - start)
            upload.etags[number] = answer["ETag"]
            # Decided before the next await: exactly one worker sees the last part land.
            last = len(upload.etags) == len(upload.parts)
            await self._save(self.state.add_part, upload.key, number, answer["ETag"], end - start)
            self._uploaded(end - start, None)
            if not last:
                return
        parts = [{"ETag": upload.etags[n], "PartNumber": n} for n in sorted(upload.etags)]
        await self._call(
            "completing a multipart upload",
            url,
            self.client.complete_multipart_upload,
            Bucket=self.bucket,
            Key=upload.key,
            UploadId=upload.upload_id,
            MultipartUpload={"Parts": parts},
        )
        upload.completed = True
        await self._save(self.state.drop, upload.key)
        assert self.progress is not None
        self.report.files += 1
        self.report.verified["md5"] = self.report.verified.get("md5", 0) + 1
        self.progress.add(0, files=1)

    async def _forget(self, key: str, upload_id: str) -> None:
        """Abort an upload no run will finish and drop its record."""
        try:
            await self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except s3_errors():
            pass  # best effort: an unfinished upload is invisible to readers, and lifecycle rules expire it
        await self._save(self.state.drop, key)


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""
