"""``aif-gateway users``: editing the users file as an admin does."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import stat
import threading
from pathlib import Path

import pytest

from aif_gateway.cli import build_parser
from aif_gateway.identity import IdentityError, load_users_file, read_users_file
from aif_gateway.users_cli import run

EXPORT = re.compile(r"^export AWS_ACCESS_KEY_ID=([A-Z0-9]{20}) AWS_SECRET_ACCESS_KEY=([A-Za-z0-9]{40})$")


def users(capsys, users_file: Path, *argv: str) -> tuple[int, str, str]:
    """Run ``aif-gateway users ARGV --users FILE``; (exit code, stdout, stderr)."""
    try:
        rc = run(build_parser().parse_args(["users", *argv, "--users", str(users_file)]))
    except SystemExit as exc:  # argparse refusing a flag
        rc = int(exc.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def printed_keys(out: str) -> tuple[str, str]:
    match = EXPORT.match(out.strip())
    assert match, out
    return match.group(1), match.group(2)


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    return tmp_path / "users.toml"


def by_name(path: Path) -> dict:
    return {u.name: u for u in load_users_file(path)}


def test_add_creates_a_private_file_and_prints_the_keys_once_ready_to_paste(capsys, users_file):
    rc, out, err = users(capsys, users_file, "add", "alice")
    assert rc == 0, err
    access, secret = printed_keys(out)
    assert stat.S_IMODE(users_file.stat().st_mode) == 0o600
    alice = by_name(users_file)["alice"]
    assert (alice.access_key, alice.secret_key, alice.admin, alice.uid) == (access, secret, False, None)
    assert secret not in err


def test_add_stores_posix_ids_and_roles(capsys, users_file):
    assert (
        users(capsys, users_file, "add", "alice", "--uid", "1001", "--gid", "100", "--groups", "2000,2001", "--admin")[
            0
        ]
        == 0
    )
    assert (
        users(capsys, users_file, "add", "bob", "--posix-user", "bob", "--allow-root", "--access-key", "AKBOBCHOSEN")[0]
        == 0
    )
    alice, bob = by_name(users_file)["alice"], by_name(users_file)["bob"]
    assert (alice.uid, alice.gid, alice.groups, alice.admin) == (1001, 100, (2000, 2001), True)
    assert (bob.posix_user, bob.allow_root, bob.access_key, bob.admin) == ("bob", True, "AKBOBCHOSEN", False)


def test_list_and_show_never_print_secrets(capsys, users_file):
    _, out, _ = users(capsys, users_file, "add", "alice", "--uid", "1001", "--gid", "100", "--admin")
    alice_key, alice_secret = printed_keys(out)
    _, out, _ = users(capsys, users_file, "add", "bob")
    bob_key, bob_secret = printed_keys(out)

    rc, listed, _ = users(capsys, users_file, "list")
    assert rc == 0
    lines = listed.splitlines()
    assert lines[0].split() == ["NAME", "ACCESS", "KEY", "POSIX", "ADMIN"]
    assert lines[1].split() == ["alice", alice_key, "uid=1001", "gid=100", "yes"]
    assert lines[2].split()[:2] == ["bob", bob_key] and lines[2].split()[-1] == "no"
    rc, shown, _ = users(capsys, users_file, "show", "alice")
    assert rc == 0 and alice_key in shown and "uid=1001 gid=100" in shown
    _, as_json, _ = users(capsys, users_file, "list", "--json")
    assert [u["name"] for u in json.loads(as_json)] == ["alice", "bob"]
    _, one_json, _ = users(capsys, users_file, "show", "bob", "--json")
    assert json.loads(one_json)["access_key"] == bob_key
    for text in (listed, shown, as_json, one_json):
        assert alice_secret not in text and bob_secret not in text and "secret" not in text


def test_remove_deletes_the_user_and_keeps_the_others_text(capsys, users_file):
    users_file.write_text(
        '# site users\n\n# alice: project lead\n[[users]]\nname = "alice"  # the lead\n'
        'access_key = "AKALICE1"\nsecret_key = "s-alice"\n\n'
        '# bob: intern\n[[users]]\nname = "bob"\naccess_key = "AKBOB1"\nsecret_key = "s-bob"\n'
    )
    users_file.chmod(0o600)
    rc, _, err = users(capsys, users_file, "remove", "bob")
    assert rc == 0, err
    assert list(by_name(users_file)) == ["alice"]
    assert users_file.read_text() == (
        '# site users\n\n# alice: project lead\n[[users]]\nname = "alice"  # the lead\n'
        'access_key = "AKALICE1"\nsecret_key = "s-alice"\n\n'
    )


def test_rotate_gives_a_new_secret_and_keeps_the_key(capsys, users_file):
    _, out, _ = users(capsys, users_file, "add", "alice", "--admin")
    key, secret = printed_keys(out)
    rc, out, _ = users(capsys, users_file, "rotate", "alice")
    new_key, new_secret = printed_keys(out)
    assert rc == 0 and new_key == key and new_secret != secret
    alice = by_name(users_file)["alice"]
    assert (alice.secret_key, alice.admin) == (new_secret, True)
    assert secret not in users_file.read_text()


def test_rotate_with_new_access_key_replaces_both(capsys, users_file):
    _, out, _ = users(capsys, users_file, "add", "alice")
    key, secret = printed_keys(out)
    _, out, _ = users(capsys, users_file, "rotate", "alice", "--new-access-key")
    new_key, new_secret = printed_keys(out)
    assert new_key != key and new_secret != secret
    assert by_name(users_file)["alice"].access_key == new_key


def test_edits_keep_comments_of_the_tables_they_leave_alone(capsys, users_file):
    users_file.write_text(
        '# who may use the gateway\n[[users]]\nname = "alice"\n# alice: ids from LDAP\n'
        'posix_user = "alice"\naccess_key = "AKALICE1"\nsecret_key = "s-alice"\n'
    )
    users_file.chmod(0o600)
    users(capsys, users_file, "add", "bob")
    users(capsys, users_file, "rotate", "bob")
    assert users_file.read_text().startswith(
        '# who may use the gateway\n[[users]]\nname = "alice"\n# alice: ids from LDAP\n'
    )
    assert list(by_name(users_file)) == ["alice", "bob"]


@pytest.mark.parametrize(
    "argv",
    [
        ["add", "alice"],  # the name is taken
        ["add", "carol", "--access-key", "AKALICE1"],  # the key is taken
        ["add", "carol", "--uid", "1001"],  # uid without gid
        ["add", "carol", "--groups", "100"],  # groups without uid
        ["add", "carol", "--posix-user", "c", "--uid", "1", "--gid", "1"],
        ["add", "carol", "--uid", "-1", "--gid", "1"],
        ["add", "carol", "--groups", "wheel"],
        ["add", "carol", "--access-key", "has/slash"],
        ["add", "two words"],
        ["show", "nobody"],
        ["rotate", "nobody"],
        ["remove", "nobody"],
        ["remove", "alice"],  # the last user
    ],
)
def test_bad_input_is_refused_with_exit_2_and_the_file_unchanged(capsys, users_file, argv):
    users(capsys, users_file, "add", "alice", "--access-key", "AKALICE1")
    before = users_file.read_text()
    rc, out, err = users(capsys, users_file, *argv)
    assert rc == 2, (out, err)
    assert err.strip() and "Traceback" not in err and out == ""
    assert users_file.read_text() == before


def test_an_unknown_user_error_says_how_to_see_who_is_there(capsys, users_file):
    users(capsys, users_file, "add", "alice")
    _, _, err = users(capsys, users_file, "show", "alcie")
    assert "no user named 'alcie'" in err and f"aif-gateway users list --users {users_file}" in err


def test_a_missing_file_is_reported_with_how_to_create_it(capsys, users_file):
    rc, _, err = users(capsys, users_file, "list")
    assert rc == 2 and "not found" in err
    rc, _, err = users(capsys, users_file, "remove", "alice")
    assert rc == 2 and "users add NAME" in err


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_a_users_file_others_may_read_or_write_is_refused_with_the_fix(capsys, users_file, mode):
    users(capsys, users_file, "add", "alice")
    users_file.chmod(mode)
    before = users_file.read_text()
    for argv in (["list"], ["add", "bob"], ["rotate", "alice"]):
        rc, out, err = users(capsys, users_file, *argv)
        assert rc == 2 and out == ""
        assert f"chmod 600 {users_file}" in err
    assert users_file.read_text() == before
    with pytest.raises(IdentityError, match="chmod 600"):
        load_users_file(users_file)  # what serve and a reload read through


def test_the_gateway_refuses_a_users_file_owned_by_another_user(capsys, users_file):
    users(capsys, users_file, "add", "alice")
    os.chown(users_file, 12345, 12345)
    with pytest.raises(IdentityError, match="chown"):
        load_users_file(users_file)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_root_edits_keep_the_files_owner(capsys, users_file):
    users(capsys, users_file, "add", "alice")
    os.chown(users_file, 12345, 12346)
    assert users(capsys, users_file, "rotate", "alice")[0] == 0
    st = users_file.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (12345, 12346, 0o600)


def test_users_file_duplicate_names_are_refused(tmp_path):
    f = tmp_path / "users.toml"
    f.write_text(
        '[[users]]\nname="a"\naccess_key="K1"\nsecret_key="S1"\n[[users]]\nname="a"\naccess_key="K2"\nsecret_key="S2"\n'
    )
    f.chmod(0o600)
    with pytest.raises(IdentityError, match="name 'a' is already used by"):
        load_users_file(f)


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(capsys, users_file, monkeypatch):
    users(capsys, users_file, "add", "alice")
    before = users_file.read_text()

    def no_space(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("aif_gateway.users_file.os.fsync", no_space)
    rc, out, err = users(capsys, users_file, "add", "bob")
    assert rc == 1 and out == "" and "No space left on device" in err
    assert users_file.read_text() == before
    assert sorted(p.name for p in users_file.parent.iterdir()) == ["users.toml", "users.toml.lock"]


def _add_many(users_file: str, prefix: str, count: int, go) -> None:
    go.wait()
    for i in range(count):
        rc = run(build_parser().parse_args(["users", "add", f"{prefix}{i}", "--users", users_file]))
        assert rc == 0


def test_concurrent_adds_from_two_processes_all_land(users_file):
    ctx = multiprocessing.get_context("fork")
    go = ctx.Event()
    procs = [ctx.Process(target=_add_many, args=(str(users_file), prefix, 25, go)) for prefix in ("a", "b")]
    for p in procs:
        p.start()
    go.set()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    names = set(by_name(users_file))
    assert names == {f"{p}{i}" for p in "ab" for i in range(25)}


def test_readers_always_see_a_whole_file_while_it_is_edited(capsys, users_file):
    users(capsys, users_file, "add", "first")
    ctx = multiprocessing.get_context("fork")
    go = ctx.Event()
    writer = ctx.Process(target=_add_many, args=(str(users_file), "u", 30, go))
    problems: list[str] = []
    counts: list[int] = []
    done = threading.Event()

    def read_until_done() -> None:
        while not done.is_set():
            try:
                counts.append(len(load_users_file(users_file)))
            except (IdentityError, OSError) as exc:
                problems.append(str(exc))

    writer.start()
    reader = threading.Thread(target=read_until_done)
    reader.start()
    go.set()
    writer.join(120)
    done.set()
    reader.join()
    assert writer.exitcode == 0 and problems == []
    assert counts == sorted(counts)  # each read sees one whole version, in order
    assert len(read_users_file(users_file)) > 0 and len(by_name(users_file)) == 31
