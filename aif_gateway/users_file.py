"""Changing the users file in place, for ``aif-gateway users`` (users_cli.py).

An edit holds an fcntl lock on ``FILE.lock``, reads the file through the gateway's own reader and
parser (identity.py), changes it, checks that the new text reads back as intended, and replaces
the file with a rename: the gateway, reloading at any moment, reads the old file or the new one,
never half of one. ``[[users]]`` tables an edit does not change keep their text, comments
included; a table it adds or changes is written in the layout of ``render_user``.
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from .identity import Identity, IdentityError, parse_users, read_users_file

__all__ = ["UsersDocument", "edit_users_file", "read_document"]

T = TypeVar("T")

NEW_FILE_HEADER = """\
# aif-gateway users file (serve --users). Keep it mode 0600: it holds every user's secret key.
# 'aif-gateway users add|remove|rotate' rewrite it: a [[users]] table they change loses the
# comments inside it. After a change: kill -HUP <gateway master pid> (systemctl reload aif-gateway).
"""
_HEADER_LINE = re.compile(r"\s*\[\[\s*users\s*\]\]\s*(#.*)?")


def toml_string(value: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def render_user(ident: Identity) -> str:
    """One ``[[users]]`` table; fields at their defaults are left out."""
    lines = [
        "[[users]]",
        f"name = {toml_string(ident.name)}",
        f"access_key = {toml_string(ident.access_key)}",
        f"secret_key = {toml_string(ident.secret_key)}",
    ]
    if ident.posix_user is not None:
        lines.append(f"posix_user = {toml_string(ident.posix_user)}")
    if ident.uid is not None:
        lines.append(f"uid = {ident.uid}")
    if ident.gid is not None:
        lines.append(f"gid = {ident.gid}")
    if ident.groups:
        lines.append(f"groups = [{', '.join(map(str, ident.groups))}]")
    if ident.admin:
        lines.append("admin = true")
    if ident.allow_root:
        lines.append("allow_root = true")
    return "\n".join(lines) + "\n"


@dataclass
class UsersDocument:
    """A users file as text around its users: ``blocks[i]`` is the text of ``users[i]``'s table,
    with the comment lines just above its header."""

    path: Path
    preamble: str = NEW_FILE_HEADER
    blocks: list[str] = field(default_factory=list)
    users: list[Identity] = field(default_factory=list)
    relaid_out: bool = False  # the file's layout was not one table per user: all re-rendered

    @classmethod
    def parse(cls, text: str, path: Path) -> UsersDocument:
        users = parse_users(text, path)
        split = _split_tables(text)
        if split is not None:
            preamble, blocks = split
            if len(blocks) == len(users) and all(_reads_as(b, u, path) for b, u in zip(blocks, users)):
                return cls(path, preamble, blocks, users)
        return cls(path, "", [render_user(u) for u in users], users, relaid_out=True)

    def index_of(self, name: str) -> int:
        for i, user in enumerate(self.users):
            if user.name == name:
                return i
        raise IdentityError(
            f"{self.path}: no user named {name!r}; 'aif-gateway users list --users {self.path}' shows who is there"
        )

    def add(self, ident: Identity) -> None:
        if any(u.name == ident.name for u in self.users):
            raise IdentityError(
                f"{self.path}: a user named {ident.name!r} exists already; pick another "
                f"name, or give it new keys with 'aif-gateway users rotate {ident.name}'"
            )
        self._refuse_used_key(ident, None)
        text = self.text()
        sep = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
        self.blocks.append(sep + render_user(ident))
        self.users.append(ident)

    def replace(self, index: int, ident: Identity) -> None:
        """Rewrite one user's table, keeping the comment lines above it."""
        self._refuse_used_key(ident, index)
        old = self.blocks[index]
        lines = old.splitlines(keepends=True)
        header = next(i for i, line in enumerate(lines) if _HEADER_LINE.fullmatch(line.rstrip("\r\n")))
        self.blocks[index] = "".join(lines[:header]) + render_user(ident) + ("\n" if old.endswith("\n\n") else "")
        self.users[index] = ident

    def remove(self, index: int) -> Identity:
        if len(self.users) == 1:
            raise IdentityError(
                f"{self.path}: {self.users[0].name!r} is its only user, and a users file "
                "needs one; add another user first"
            )
        del self.blocks[index]
        return self.users.pop(index)

    def text(self) -> str:
        return self.preamble + "".join(self.blocks)

    def _refuse_used_key(self, ident: Identity, index: int | None) -> None:
        for i, user in enumerate(self.users):
            if i != index and user.access_key == ident.access_key:
                raise IdentityError(
                    f"{self.path}: access key {ident.access_key} already belongs to "
                    f"{user.name!r}; each key must be unique"
                )


def _split_tables(text: str) -> tuple[str, list[str]] | None:
    """(text before the first table, each ``[[users]]`` table's text), or None without tables."""
    lines = text.splitlines(keepends=True)
    headers = [i for i, line in enumerate(lines) if _HEADER_LINE.fullmatch(line.rstrip("\r\n"))]
    if not headers:
        return None
    starts = []
    for h in headers:
        # Comment lines right above a header describe that table: they move with it.
        start = h
        while start > 0 and lines[start - 1].lstrip().startswith("#"):
            start -= 1
        starts.append(start)
    starts.append(len(lines))
    return "".join(lines[: starts[0]]), ["".join(lines[a:b]) for a, b in zip(starts, starts[1:])]


def _reads_as(block: str, user: Identity, path: Path) -> bool:
    try:
        return parse_users(block, path) == [user]
    except IdentityError:
        return False


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Two edits at once would each read the same file and the second rename would drop the first
    one's change, so an edit holds FILE.lock. An fcntl lock: NFS, Lustre and GPFS honour those
    across nodes. The lock file stays: removing it would race with an edit about to lock it."""
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_atomically(path: Path, text: str, owner: os.stat_result | None) -> None:
    """Replace ``path`` by a new file, mode 0600, holding ``text``; root keeps the old owner, so a
    gateway running as its own user can still read the file root edited."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            if owner is not None and os.geteuid() == 0:
                os.fchown(f.fileno(), owner.st_uid, owner.st_gid)
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a crash
    finally:
        os.close(dir_fd)


def read_document(path: Path) -> UsersDocument:
    """The users file as it is now (no lock needed: edits replace it whole)."""
    return UsersDocument.parse(read_users_file(path, check_owner=False), path)


def edit_users_file(path: Path, change: Callable[[UsersDocument], T], *, create: bool = False) -> tuple[T, bool]:
    """Apply ``change`` to the file under its lock; returns (what ``change`` returned, whether the
    file's own layout had to be replaced by the standard one). ``create``: a missing file starts empty."""
    path = Path(os.path.realpath(path))  # a symlinked users file is edited where it lives
    with _locked(path):
        try:
            owner: os.stat_result | None = os.stat(path)
        except FileNotFoundError:
            if not create:
                raise IdentityError(
                    f"{path}: users file not found; create it with 'aif-gateway users add NAME --users {path}'"
                ) from None
            owner, doc = None, UsersDocument(path)
        else:
            doc = read_document(path)
        result = change(doc)
        text = doc.text()
        if parse_users(text, path) != doc.users:
            raise RuntimeError(f"{path}: the edited file would not read back as intended; nothing written")
        _write_atomically(path, text, owner)
    return result, doc.relaid_out
