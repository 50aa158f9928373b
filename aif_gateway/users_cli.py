"""``aif-gateway users add | list | show | remove | rotate``: the users file as an admin manages it.

Exit codes: 0 ok; 2 usage or validation error (bad flags, unknown or duplicate user, a users file
that is invalid or readable by others); 1 anything else (the file cannot be read or written).
A new secret goes to stdout once, as an ``export`` line; nothing else ever prints it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from pathlib import Path
from typing import Any

from .credentials import new_access_key, new_secret_key
from .identity import Identity, IdentityError, identity_from_entry
from .users_file import UsersDocument, edit_users_file, read_document

__all__ = ["add_users_parser", "run"]

DESCRIPTION = """\
Add, list, show and remove the gateway's users, and rotate their keys, in the users file that
'aif-gateway serve --users FILE' reads. Edits rewrite FILE whole (a new file, mode 0600, renamed
over it, under a lock on FILE.lock): tables an edit leaves alone keep their text and comments, a
table it adds or changes is written in a standard layout. A running gateway picks the change up
on SIGHUP (systemctl reload aif-gateway, or kill -HUP with the pid of its "aif-gateway starting"
log line), without dropping connections."""

EPILOG = """\
examples:
  aif-gateway users add alice --posix-user alice --users /etc/aif-gateway/users.toml
  aif-gateway users add ci-bot --uid 2001 --gid 2001 --groups 100,2000 --users users.toml
  eval "$(aif-gateway users add me --admin --users users.toml)"   # the new keys into this shell
  aif-gateway users list --users users.toml
  aif-gateway users show alice --users users.toml
  aif-gateway users rotate alice --users users.toml                # new secret, same access key
  aif-gateway users remove alice --users users.toml
  systemctl reload aif-gateway                                     # or: kill -HUP MASTER_PID

A user without --uid/--gid or --posix-user acts with the gateway's own POSIX ids (a gateway whose
config sets require_posix_ids refuses such a user at start and at reload).
exit codes: 0 ok, 2 usage or validation error, 1 other (the file cannot be read or written).
"""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")
# No '/' (it separates the fields of a SigV4 credential), no spaces or '=' (they break the
# Authorization header and the export line).
_ACCESS_KEY = re.compile(r"[A-Za-z0-9._-]{3,128}")


def _name(text: str) -> str:
    if not _NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r}: use 1 to 64 letters, digits and . _ @ + - (starting with a letter or digit)"
        )
    return text


def _access_key(text: str) -> str:
    if not _ACCESS_KEY.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r}: use 3 to 128 letters, digits and . _ -")
    return text


def _groups(text: str) -> list[int]:
    try:
        return [int(g) for g in text.split(",") if g.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: numeric group ids separated by commas, e.g. 100,2001") from None


def add_users_parser(sub: Any) -> None:
    """Add the ``users`` command and its actions to ``sub``, the subparsers of aif_gateway/cli.py."""
    users = sub.add_parser(
        "users",
        help="add, list, show, remove users and rotate their keys (--users FILE)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = users.add_subparsers(dest="users_command", metavar="ACTION")
    actions.required = True
    file_flag = argparse.ArgumentParser(add_help=False)
    file_flag.add_argument(
        "--users",
        type=Path,
        required=True,
        metavar="FILE",
        help="the users file, as given to serve --users (rewritten by add, remove, rotate)",
    )

    def action(name: str, text: str) -> argparse.ArgumentParser:
        return actions.add_parser(
            name,
            parents=[file_flag],
            help=text,
            description=text[0].upper() + text[1:] + ".",
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    add = action("add", "add a user with new keys (the secret is printed once, as an export line on stdout)")
    add.add_argument("name", type=_name, metavar="NAME", help="the user's name, as logs and these commands show it")
    add.add_argument("--admin", action="store_true", help="the user is an administrator")
    add.add_argument(
        "--access-key",
        type=_access_key,
        metavar="KEY",
        help="use this access key (default: a new one, 20 upper-case letters and digits)",
    )
    posix = add.add_argument_group("POSIX identity (default: none, the user acts with the gateway's own ids)")
    posix.add_argument("--uid", type=int, metavar="N", help="user id (needs --gid)")
    posix.add_argument("--gid", type=int, metavar="N", help="primary group id, for new files")
    posix.add_argument("--groups", type=_groups, metavar="N,N", help="supplementary group ids, e.g. 100,2001")
    posix.add_argument(
        "--posix-user",
        metavar="LOGIN",
        help="take uid, gid and groups from this login through NSS (passwd, LDAP, SSSD)",
    )
    posix.add_argument("--allow-root", action="store_true", help="uid 0 acts as root (otherwise it acts as nobody)")

    action("list", "list users: name, access key, POSIX ids, admin (never secrets)").add_argument(
        "--json", action="store_true", help="one JSON array"
    )
    show = action("show", "show one user (never its secret)")
    show.add_argument("name", metavar="NAME")
    show.add_argument("--json", action="store_true", help="one JSON object")
    action("remove", "remove a user: its keys stop working at the gateway's next reload").add_argument(
        "name", metavar="NAME"
    )
    rotate = action("rotate", "give a user a new secret key (printed once, as an export line on stdout)")
    rotate.add_argument("name", metavar="NAME")
    rotate.add_argument("--new-access-key", action="store_true", help="a new access key too")


def _export_line(ident: Identity) -> str:
    return f"export AWS_ACCESS_KEY_ID={ident.access_key} AWS_SECRET_ACCESS_KEY={ident.secret_key}"


def _posix(ident: Identity) -> str:
    if ident.posix_user is not None:
        ids = f"posix_user={ident.posix_user}"
    elif ident.uid is not None:
        ids = f"uid={ident.uid} gid={ident.gid}" + (
            f" groups={','.join(map(str, ident.groups))}" if ident.groups else ""
        )
    else:
        return "(the gateway's own)"
    return ids + (" allow_root" if ident.allow_root else "")


def _public(ident: Identity) -> dict[str, Any]:
    fields = dataclasses.asdict(ident)
    del fields["secret_key"]
    fields["groups"] = list(ident.groups)
    return fields


def _add(args: argparse.Namespace) -> int:
    entry: dict[str, Any] = {
        "name": args.name,
        "access_key": args.access_key or new_access_key(),
        "secret_key": new_secret_key(),
    }
    for flag in ("uid", "gid", "groups", "posix_user"):
        if getattr(args, flag) is not None:
            entry[flag] = getattr(args, flag)
    for flag in ("admin", "allow_root"):
        if getattr(args, flag):
            entry[flag] = True
    ident = identity_from_entry(entry, f"user {args.name!r}")
    _, relaid = edit_users_file(args.users, lambda doc: doc.add(ident), create=True)
    print(_export_line(ident), flush=True)
    _done(args, f"added {ident.name!r}; its secret key is printed above and never again", relaid)
    return 0


def _rotate(args: argparse.Namespace) -> int:
    def change(doc: UsersDocument) -> Identity:
        i = doc.index_of(args.name)
        new_key = new_access_key() if args.new_access_key else doc.users[i].access_key
        ident = dataclasses.replace(doc.users[i], access_key=new_key, secret_key=new_secret_key())
        doc.replace(i, ident)
        return ident

    ident, relaid = edit_users_file(args.users, change)
    print(_export_line(ident), flush=True)
    _done(
        args,
        f"new {'keys' if args.new_access_key else 'secret key'} for {ident.name!r}, printed above "
        "and never again; the old ones work until the gateway reloads",
        relaid,
    )
    return 0


def _remove(args: argparse.Namespace) -> int:
    _, relaid = edit_users_file(args.users, lambda doc: doc.remove(doc.index_of(args.name)))
    _done(args, f"removed {args.name!r}; its keys work until the gateway reloads", relaid)
    return 0


def _done(args: argparse.Namespace, what: str, relaid: bool) -> None:
    if relaid:
        print(
            f"aif-gateway users: {args.users}: its layout was not one [[users]] table per user, so "
            "every table was rewritten in the standard layout (comments dropped)",
            file=sys.stderr,
        )
    print(
        f"aif-gateway users: {args.users}: {what}. Tell a running gateway: systemctl reload "
        "aif-gateway, or kill -HUP MASTER_PID",
        file=sys.stderr,
    )


def _list(args: argparse.Namespace) -> int:
    users = read_document(args.users).users
    if args.json:
        print(json.dumps([_public(u) for u in users]))
        return 0
    rows = [("NAME", "ACCESS KEY", "POSIX", "ADMIN")]
    rows += [(u.name, u.access_key, _posix(u), "yes" if u.admin else "no") for u in users]
    widths = [max(len(row[c]) for row in rows) for c in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[3])
    return 0


def _show(args: argparse.Namespace) -> int:
    doc = read_document(args.users)
    ident = doc.users[doc.index_of(args.name)]
    if args.json:
        print(json.dumps(_public(ident)))
        return 0
    print(
        f"name:        {ident.name}\naccess key:  {ident.access_key}\nposix:       {_posix(ident)}\n"
        f"admin:       {'yes' if ident.admin else 'no'}"
    )
    return 0


_ACTIONS = {"add": _add, "list": _list, "show": _show, "remove": _remove, "rotate": _rotate}


def run(args: argparse.Namespace) -> int:
    """Run the ``users`` action ``args`` names; the exit code (see the module docstring)."""
    try:
        return _ACTIONS[args.users_command](args)
    except IdentityError as exc:
        print(f"aif-gateway users {args.users_command}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        where = exc.filename or args.users
        print(f"aif-gateway users {args.users_command}: {where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
