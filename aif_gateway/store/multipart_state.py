"""The on-disk state of multipart uploads: upload ids, JSON records, part files, completions.

Everything lives on the shared filesystem, so any gateway process on any node can continue,
list, complete or abort an upload that another one started, including after restarts. Layout,
in the bucket's state directory (``internal``)::

    uploads/<upload_id>/upload.json        key, attrs, checksum algorithm/type, owner
    uploads/<upload_id>/part-00001.json    the part's record: data file, size, MD5, checksums
    uploads/<upload_id>/part-00001.<token> the part's bytes, in a file of its own...
    uploads/<upload_id>/data               ...or at offset (n-1)*P of the shared data file
    uploads/<upload_id>/layout.json        the part size P, and whether the upload left it
    uploads/<upload_id>/slots              who writes into ``data`` (``multipart_slots``)
    completed/<upload_id>.json             what Complete returned, for retried Completes

An upload's directory is made with its initiator's ids, mode 0700, and everything in it is
written with the ids of the request at hand: other users cannot read, change or complete it
(the kernel refuses them), and its owner can change only what is theirs anyway. A caller with
the gateway's own ids acts on a user's upload with its owner's ids (``owner_ids``, used by
``FsStore``). Records are still checked before use (``record_checks.valid_part_record``,
``open_file``): their
owner may have rewritten them by hand, and nothing may follow names out of the upload's
directory. Completion records are the gateway's, written with its ids into a directory no user
can write: a user could otherwise plant the "answer" of another user's Complete.

Completion records live outside ``uploads/`` so that a bucket whose uploads are all finished
counts as having none (DeleteBucket); ``cleanup_done_records`` drops them after a day.

A part's bytes go to a fresh data file first; replacing ``part-NNNNN.json`` then switches the
part atomically (a reader sees the old bytes with the old MD5 or the new with the new, never a
mix), and only then is the previous data file removed. ``lock(upload_id)`` is the upload's
``fcntl`` lock (``locks.key_lock`` on a name no object key can take): Complete and Abort hold
it throughout, ``store_part`` for its switch, so a part cannot change under a Complete.

A record names its bytes by ``file`` and ``offset`` (records written before the shared data file
existed have no offset: 0). The layout is decided once, cluster-wide, by ``link()``-ing
``layout.json`` into place (it fails when another writer decided first); leaving it is a
``replace`` that keeps P, since records already in ``data`` still sit at multiples of it.

Upload ids are ``<initiated ns, 16 hex><random, 16 hex><key tag, 8 hex>``: they sort by
initiation time (ListMultipartUploads pages by id within a key) and name their key, so a
request for another key is refused without reading anything. The format is checked before an
id is ever used as a path.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pwd
import re
import secrets
import shutil
import stat
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from ..checksums import b64
from ..errors import S3Error
from ..fsio.creds import GATEWAY, PosixIds, as_gateway
from ..fsio.dirdefaults import TEMP_FILE_MODE
from ..fsio.newfile import create_new_file
from .base import CHECKSUM_ALGORITHMS, ObjectAttrs, PartInfo, UploadInfo
from .locks import key_lock
from .paths import INTERNAL_DIR, BucketPaths
from .publish import TempObject, discard, remove_older_than
from .record_checks import valid_part_record

__all__ = ["DATA_FILE", "DONE_RECORD_TTL_S", "PartRecord", "UploadState", "check_id", "new_upload_id", "no_upload"]

DONE_RECORD_TTL_S = 24 * 3600
COMPLETED_DIR = "completed"
DATA_FILE = "data"
_LAYOUT_FILE = "layout.json"
_SLOTS_FILE = "slots"
_UPLOAD_ID = re.compile(r"^[0-9a-f]{40}$")

# A part's record as stored in part-NNNNN.json: part_number, file, offset (absent: 0), size,
# etag (hex MD5), checksums ({algorithm: base64}), mtime_ns.
PartRecord = dict[str, Any]
_MAX_RECORD_BYTES = 1 << 20  # far above any record this module writes (10,000 parts: ~200 KiB)


def _key_tag(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:8]


def new_upload_id(key: str) -> str:
    """A new upload id for ``key`` (its format: the module docstring)."""
    return f"{time.time_ns():016x}{secrets.token_hex(8)}{_key_tag(key)}"


def no_upload(upload_id: str) -> S3Error:
    """The NoSuchUpload error for ``upload_id``, for the caller to raise."""
    return S3Error("NoSuchUpload", extra={"UploadId": upload_id})


def check_id(key: str | None, upload_id: str) -> None:
    """Refuse ids we never issued (they become paths) and ids issued for another key."""
    if not _UPLOAD_ID.match(upload_id) or (key is not None and upload_id[32:] != _key_tag(key)):
        raise no_upload(upload_id)


def _write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    try:
        tmp.write_text(json.dumps(data, ensure_ascii=False))
        os.replace(tmp, path)
    except BaseException:
        discard(tmp)
        raise


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            data = json.loads(f.read(_MAX_RECORD_BYTES + 1))
    except (FileNotFoundError, NotADirectoryError, ValueError, RecursionError):
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a symlink where a record belongs
            return None
        raise
    return data if isinstance(data, dict) else None


def _typed(value: Any, kind: type) -> Any:
    # bool is an int: a record saying true where a number belongs is not one of ours.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"expected {kind.__name__}")
    return value


class UploadState:
    """The uploads of one bucket, as files. Every method blocks."""

    def __init__(self, bucket: BucketPaths) -> None:
        self.bucket = bucket

    def _dir(self, upload_id: str) -> Path:
        return self.bucket.uploads / upload_id

    def _done_path(self, upload_id: str) -> Path:
        return self.bucket.state / COMPLETED_DIR / f"{upload_id}.json"

    def lock(self, upload_id: str) -> AbstractContextManager[None]:
        # Object keys never start with the internal directory, so this name is the upload's own.
        return key_lock(self.bucket.state, f"{INTERNAL_DIR}/uploads/{upload_id}")

    # -- uploads ----------------------------------------------------------------------------
    def create(self, upload_id: str, record: dict[str, Any]) -> None:
        os.mkdir(self._dir(upload_id), 0o700)
        # The data file is made here, by the one request that creates the upload, so that it
        # gets the layout of an object of unknown size (on Lustre a widening PFL layout, which
        # only the file's creator can set) without a race between parts.
        os.close(create_new_file(self._dir(upload_id) / DATA_FILE, None))
        _write_json_atomically(self._dir(upload_id) / "upload.json", record)

    def load(self, key: str | None, upload_id: str) -> UploadInfo:
        """The upload, or NoSuchUpload (also for a well-formed id of another key)."""
        check_id(key, upload_id)
        directory = self._dir(upload_id)
        try:
            if not stat.S_ISDIR(os.lstat(directory).st_mode):  # a symlink planted in its place
                raise no_upload(upload_id)
        except (FileNotFoundError, NotADirectoryError):
            raise no_upload(upload_id) from None
        data = _read_json(directory / "upload.json")
        try:
            if data is None or (key is not None and data["key"] != key):
                raise no_upload(upload_id)
            return UploadInfo(
                bucket=self.bucket.name,
                key=_typed(data["key"], str),
                upload_id=upload_id,
                initiated_ns=_typed(data["initiated_ns"], int),
                attrs=ObjectAttrs(**_typed(data["attrs"], dict)),
                checksum_algorithm=data["checksum_algorithm"],
                checksum_type=data["checksum_type"],
                owner=data["owner"],
            )
        except (KeyError, TypeError, ValueError):
            raise no_upload(upload_id) from None

    def owner_ids(self, upload_id: str) -> PosixIds | None:
        """The ids of whoever owns the upload's directory (their groups through NSS), or None
        when it is the gateway's own or no such upload is there."""
        if not _UPLOAD_ID.match(upload_id):
            return None
        try:
            st = os.lstat(self._dir(upload_id))
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat.S_ISDIR(st.st_mode) or st.st_uid == GATEWAY.uid:
            return None
        try:
            groups = os.getgrouplist(pwd.getpwuid(st.st_uid).pw_name, st.st_gid)
        except KeyError:
            groups = []
        return PosixIds(st.st_uid, st.st_gid, tuple(g for g in groups if g != st.st_gid))

    def all_uploads(self) -> list[UploadInfo]:
        """Every upload the caller may read (others' directories are theirs alone)."""
        uploads = []
        try:
            with as_gateway():  # uploads/ is listable by the gateway only
                names = os.listdir(self.bucket.uploads)
        except FileNotFoundError:
            return []
        for name in names:
            if _UPLOAD_ID.match(name):
                try:
                    uploads.append(self.load(None, name))
                except (S3Error, PermissionError):
                    continue  # completed or aborted while we listed, or not the caller's
        return uploads

    def remove(self, upload_id: str) -> None:
        # Rename first, so the upload vanishes in one step even if the removal is interrupted.
        doomed = self.bucket.tmp / f"upload.{upload_id}.{secrets.token_hex(4)}"
        os.rename(self._dir(upload_id), doomed)
        shutil.rmtree(doomed, ignore_errors=True)

    # -- parts ------------------------------------------------------------------------------
    def parts(self, upload_id: str) -> dict[int, PartRecord]:
        """The upload's part records by number; FileNotFoundError once the upload is gone."""
        parts = {}
        with os.scandir(self._dir(upload_id)) as entries:
            for entry in entries:
                if entry.name.startswith("part-") and entry.name.endswith(".json"):
                    record = _read_json(Path(entry.path))
                    if record is not None and valid_part_record(record, entry.name):
                        parts[record["part_number"]] = record
        return parts

    def open_file(self, upload_id: str, name: str, flags: int) -> int:
        """A descriptor of the upload's own file ``name`` (``data`` or a part's file).

        Its owner may replace anything in the upload's directory, and a request acting with the
        gateway's ids may still act on it: so no symlink is followed, and the file must be a
        regular file owned by whoever owns the directory (not another user's file hard-linked
        in: a link of one's own file gives nothing one did not have)."""
        directory = self._dir(upload_id)
        fd = os.open(directory / name, flags | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            st, owner = os.fstat(fd), os.lstat(directory).st_uid
            if not stat.S_ISREG(st.st_mode) or st.st_uid != owner:
                raise S3Error("InvalidPart", "A part's data is not a file of its own upload.")
        except BaseException:
            os.close(fd)
            raise
        return fd

    def store_part(
        self,
        key: str,
        upload_id: str,
        part_number: int,
        temp: TempObject,
        algorithms: frozenset[str],
        offset: int | None = None,
    ) -> PartInfo:
        """Switch the part's record to received bytes: ``temp`` moves into the upload, or,
        with ``offset``, ``temp`` is the upload's data file, already written at ``offset``.

        ``algorithms`` are the checksums the part keeps; other digests of ``temp`` are dropped.
        """
        checksums = {
            name: b64(digest)
            for name, digest in temp.digests.items()
            if name in algorithms and name in CHECKSUM_ALGORITHMS
        }
        name = f"part-{part_number:05d}"
        with self.lock(upload_id):
            self.load(key, upload_id)
            directory = self._dir(upload_id)
            if offset is None:
                data_name = f"{name}.{secrets.token_hex(6)}"
                os.rename(temp.path, directory / data_name)
                placed: dict[str, str | int] = {"file": data_name}
            else:
                placed = {"file": DATA_FILE, "offset": offset}
            previous = _read_json(directory / f"{name}.json")
            record = {
                "part_number": part_number,
                **placed,
                "size": temp.size,
                "etag": temp.digests["MD5"].hex(),
                "checksums": checksums,
                "mtime_ns": temp.mtime_ns,
            }
            _write_json_atomically(directory / f"{name}.json", record)
            if previous is not None and previous["file"] not in (DATA_FILE, record["file"]):
                discard(directory / previous["file"])
        return PartInfo(part_number, temp.size, temp.digests["MD5"].hex(), temp.mtime_ns, checksums)

    # -- the shared data file ---------------------------------------------------------------
    def data_file(self, upload_id: str) -> Path:
        return self._dir(upload_id) / DATA_FILE

    def slots_file(self, upload_id: str) -> Path:
        return self._dir(upload_id) / _SLOTS_FILE

    def layout(self, upload_id: str) -> dict[str, Any] | None:
        """``{"part_size": P, "separate": bool}``, or None while no part has decided P."""
        return _read_json(self._dir(upload_id) / _LAYOUT_FILE)

    def claim_part_size(self, upload_id: str, part_size: int) -> dict[str, Any]:
        """Make ``part_size`` the upload's P unless a writer anywhere decided first; the layout
        in force. FileNotFoundError once the upload is gone."""
        directory = self._dir(upload_id)
        # The data file exists before the layout names it, so whoever reads one finds the other
        # (create() made it; this is for uploads created before it did).
        os.close(
            os.open(directory / DATA_FILE, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, TEMP_FILE_MODE)
        )
        proposal = directory / f".{_LAYOUT_FILE}.{secrets.token_hex(6)}"
        try:
            proposal.write_text(json.dumps({"part_size": part_size, "separate": False}))
            os.link(proposal, directory / _LAYOUT_FILE)
        except FileExistsError:
            pass  # decided by another writer: theirs holds
        finally:
            discard(proposal)
        layout = self.layout(upload_id)
        if layout is None:
            raise FileNotFoundError(directory / _LAYOUT_FILE)
        return layout

    def leave_data_file(self, upload_id: str, layout: dict[str, Any]) -> None:
        """From now on, new parts of the upload go to files of their own."""
        _write_json_atomically(self._dir(upload_id) / _LAYOUT_FILE, {**layout, "separate": True})

    def forget_data_part(self, key: str, upload_id: str, part_number: int) -> None:
        """Drop part ``part_number``'s record if its bytes are in the data file, whose range
        is about to be rewritten: a rewrite that fails must not leave the old record naming
        half-new bytes. (Call holding the part's slot.) NoSuchUpload once the upload is gone."""
        with self.lock(upload_id):
            self.load(key, upload_id)
            record_path = self._dir(upload_id) / f"part-{part_number:05d}.json"
            record = _read_json(record_path)
            if record is not None and record["file"] == DATA_FILE:
                discard(record_path)

    # -- completions ------------------------------------------------------------------------
    def read_done(self, upload_id: str) -> dict[str, Any] | None:
        with as_gateway():
            return _read_json(self._done_path(upload_id))

    def write_done(self, upload_id: str, record: dict[str, Any]) -> None:
        with as_gateway():
            _write_json_atomically(self._done_path(upload_id), record)

    def cleanup_done_records(self, older_than_s: float = DONE_RECORD_TTL_S) -> int:
        """Forget completions older than ``older_than_s``; returns how many went. (Upload
        directories whose removal a crash interrupted lie in tmp/: ``cleanup_stale_temp``.)"""
        return remove_older_than(self.bucket.state / COMPLETED_DIR, older_than_s)
