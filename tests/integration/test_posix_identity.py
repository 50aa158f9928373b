"""Going through the gateway gives a user exactly their POSIX rights, enforced by the kernel.

The gateway runs as root (as a site runs it) with a users file mapping keys to uids, gids and
supplementary groups; directory modes, setgid bits and POSIX ACLs (``setfacl``) are set on the
tree as a user or an administrator would set them on a login node, and each check is made with
boto3 as the S3 users, next to what the same user gets from the kernel directly.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from .clients import boto3_client
from .gateway import Credentials, GatewayProcess, free_port
from .helpers import VENV_BIN

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching to other users' ids needs root")

ALICE, BOB, CAROL = 4101, 4102, 4103
TEAM = 4200  # bob's supplementary group
USERS = {
    "alice": (Credentials("AKALICE000000000001", "alice-secret"), f"uid = {ALICE}\ngid = {ALICE}\n"),
    "bob": (Credentials("AKBOB00000000000002", "bob-secret"), f"uid = {BOB}\ngid = {BOB}\ngroups = [{TEAM}]\n"),
    "carol": (Credentials("AKCAROL000000000003", "carol-secret"), f"uid = {CAROL}\ngid = {CAROL}\n"),
    "squashed": (Credentials("AKSQUASH00000000004", "squash-secret"), "uid = 0\ngid = 0\n"),
    "trusted": (Credentials("AKTRUSTED0000000005", "trusted-secret"), "uid = 0\ngid = 0\nallow_root = true\n"),
}


def users_toml() -> str:
    return "".join(
        f'[[users]]\nname = "{name}"\naccess_key = "{cred.access_key}"\nsecret_key = "{cred.secret_key}"\n{ids}\n'
        for name, (cred, ids) in USERS.items()
    )


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="aif-identity-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def gateway(root: Path, tmp_path_factory: pytest.TempPathFactory, credentials: Credentials) -> Iterator[GatewayProcess]:
    config = tmp_path_factory.mktemp("identity-config")
    users = config / "users.toml"
    users.write_text(users_toml())
    users.chmod(0o600)
    gw = GatewayProcess(root, config, credentials=credentials, workers=3, extra_args=("--users", str(users))).start()
    yield gw
    gw.stop()
    assert not gw.tracebacks(), gw.tracebacks()


@pytest.fixture(scope="module")
def clients(gateway: GatewayProcess, credentials: Credentials) -> Iterator[dict]:
    made = {name: boto3_client(gateway.url, cred) for name, (cred, _) in USERS.items()}
    made["admin"] = boto3_client(gateway.url, credentials)  # no POSIX ids: acts as the gateway
    yield made
    for client in made.values():
        client.close()


@pytest.fixture
def bucket(request: pytest.FixtureRequest, clients: dict, root: Path) -> str:
    """A bucket created by alice: its directory is hers (0755, as her mkdir would make it)."""
    name = "id-" + request.node.name.lower().replace("_", "-")[:40].strip("-")
    clients["alice"].create_bucket(Bucket=name)
    return name


def code_of(call, *args, **kwargs) -> str:
    with pytest.raises(ClientError) as exc:
        call(*args, **kwargs)
    return exc.value.response["Error"]["Code"]


def as_user(uid: int, *command: str, groups: tuple[int, ...] = ()) -> subprocess.CompletedProcess[str]:
    """Run ``command`` as a local user (the attacker, or a user checking by hand)."""
    group_args = [f"--groups={','.join(map(str, groups))}"] if groups else ["--clear-groups"]
    return subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", *group_args, *command],
        capture_output=True,
        text=True,
        check=False,
    )


def owner(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_uid, st.st_gid


# -- files belong to who wrote them -----------------------------------------------------------


def test_a_created_bucket_and_its_objects_belong_to_the_user(clients: dict, root: Path, bucket: str) -> None:
    clients["alice"].put_object(Bucket=bucket, Key="dir/k", Body=b"mine")
    assert owner(root / bucket) == (ALICE, ALICE)
    assert owner(root / bucket / "dir") == (ALICE, ALICE)
    assert owner(root / bucket / "dir" / "k") == (ALICE, ALICE)
    # Readable by others as `ls -l` would show (0644 under the usual umask), writable by none.
    assert clients["bob"].get_object(Bucket=bucket, Key="dir/k")["Body"].read() == b"mine"
    assert code_of(clients["bob"].put_object, Bucket=bucket, Key="dir/k", Body=b"bob's") == "AccessDenied"
    assert code_of(clients["bob"].delete_object, Bucket=bucket, Key="dir/k") == "AccessDenied"
    assert (root / bucket / "dir" / "k").read_bytes() == b"mine"


def test_a_refused_put_leaves_nothing_behind(clients: dict, root: Path, bucket: str) -> None:
    before = sorted(p.name for p in (root / ".aifgw" / "state" / bucket / "tmp").iterdir())
    assert code_of(clients["bob"].put_object, Bucket=bucket, Key="new/obj", Body=b"x" * 100_000) == "AccessDenied"
    assert not (root / bucket / "new").exists()
    assert sorted(p.name for p in (root / ".aifgw" / "state" / bucket / "tmp").iterdir()) == before


def test_an_owner_only_directory_is_closed_to_others(clients: dict, root: Path, bucket: str) -> None:
    alice = clients["alice"]
    alice.put_object(Bucket=bucket, Key="private/secret", Body=b"s")
    alice.put_object(Bucket=bucket, Key="public/open", Body=b"o")
    assert as_user(ALICE, "chmod", "700", str(root / bucket / "private")).returncode == 0
    bob = clients["bob"]
    assert code_of(bob.get_object, Bucket=bucket, Key="private/secret") == "AccessDenied"
    assert code_of(bob.head_object, Bucket=bucket, Key="private/secret") == "403"
    assert code_of(bob.put_object, Bucket=bucket, Key="private/more", Body=b"m") == "AccessDenied"
    listed = [o["Key"] for o in bob.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert listed == ["public/open"]  # the unreadable directory is left out
    assert [o["Key"] for o in alice.list_objects_v2(Bucket=bucket)["Contents"]] == ["private/secret", "public/open"]


def test_an_unreadable_bucket_directory_is_access_denied(clients: dict, root: Path, bucket: str) -> None:
    clients["alice"].put_object(Bucket=bucket, Key="k", Body=b"k")
    assert as_user(ALICE, "chmod", "700", str(root / bucket)).returncode == 0
    assert code_of(clients["bob"].list_objects_v2, Bucket=bucket) == "AccessDenied"
    assert code_of(clients["bob"].get_object, Bucket=bucket, Key="k") == "AccessDenied"
    assert clients["alice"].list_objects_v2(Bucket=bucket)["KeyCount"] == 1


def test_a_group_shared_directory_works_through_supplementary_groups(clients: dict, root: Path, bucket: str) -> None:
    shared = root / bucket / "team"
    shared.mkdir()
    os.chown(shared, ALICE, TEAM)
    shared.chmod(0o2770)  # setgid: files made inside belong to the team
    clients["bob"].put_object(Bucket=bucket, Key="team/report", Body=b"by bob")
    assert owner(shared / "report") == (BOB, TEAM)
    assert code_of(clients["carol"].get_object, Bucket=bucket, Key="team/report") == "AccessDenied"
    assert code_of(clients["carol"].put_object, Bucket=bucket, Key="team/x", Body=b"x") == "AccessDenied"
    # The kernel agrees, for the same users by hand.
    assert as_user(BOB, "cat", str(shared / "report"), groups=(TEAM,)).stdout == "by bob"
    assert as_user(CAROL, "cat", str(shared / "report")).returncode != 0


def test_an_acl_grants_one_user_read(clients: dict, root: Path, bucket: str) -> None:
    clients["alice"].put_object(Bucket=bucket, Key="acl/file", Body=b"for carol")
    path = root / bucket / "acl" / "file"
    assert as_user(ALICE, "chmod", "600", str(path)).returncode == 0
    assert as_user(ALICE, "setfacl", "-m", f"u:{CAROL}:r", str(path)).returncode == 0
    assert clients["carol"].get_object(Bucket=bucket, Key="acl/file")["Body"].read() == b"for carol"
    assert code_of(clients["bob"].get_object, Bucket=bucket, Key="acl/file") == "AccessDenied"


def test_a_default_acl_is_inherited_by_uploaded_files(clients: dict, root: Path, bucket: str) -> None:
    clients["alice"].put_object(Bucket=bucket, Key="drop/", Body=b"")
    drop = root / bucket / "drop"
    assert as_user(ALICE, "setfacl", "-m", f"u:{BOB}:rwx,d:u:{BOB}:rw", str(drop)).returncode == 0
    clients["alice"].put_object(Bucket=bucket, Key="drop/shared", Body=b"v1")
    acl = subprocess.run(["getfacl", "-cpE", str(drop / "shared")], capture_output=True, text=True, check=True).stdout
    assert f"user:{BOB}:rw-" in acl and "mask::rw-" in acl  # as for a file cp had made there
    assert as_user(BOB, "sh", "-c", f"echo -n v2 > {drop / 'shared'}").returncode == 0
    clients["bob"].put_object(Bucket=bucket, Key="drop/shared", Body=b"v3")  # the directory's ACL lets bob replace it
    assert (drop / "shared").read_bytes() == b"v3"
    assert code_of(clients["carol"].put_object, Bucket=bucket, Key="drop/shared", Body=b"v3") == "AccessDenied"


def aws(gateway: GatewayProcess, name: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """awscli as S3 user ``name``."""
    cred = USERS[name][0]
    (tmp_path / "home").mkdir(exist_ok=True)
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": cred.access_key,
        "AWS_SECRET_ACCESS_KEY": cred.secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "HOME": str(tmp_path / "home"),
    }
    return subprocess.run(
        [str(VENV_BIN / "aws"), "--endpoint-url", gateway.url, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_awscli_users_get_their_own_rights(gateway: GatewayProcess, root: Path, bucket: str, tmp_path: Path) -> None:
    source = tmp_path / "report.txt"
    source.write_text("alice's report\n")
    assert aws(gateway, "alice", tmp_path, "s3", "cp", str(source), f"s3://{bucket}/mine/report.txt").returncode == 0
    assert as_user(ALICE, "chmod", "700", str(root / bucket / "mine")).returncode == 0
    refused = aws(gateway, "bob", tmp_path, "s3", "cp", f"s3://{bucket}/mine/report.txt", str(tmp_path / "got"))
    assert refused.returncode != 0 and "403" in refused.stderr
    refused = aws(gateway, "bob", tmp_path, "s3", "rm", f"s3://{bucket}/mine/report.txt")
    assert refused.returncode != 0 and "AccessDenied" in refused.stderr
    assert (root / bucket / "mine" / "report.txt").read_text() == "alice's report\n"
    listed = aws(gateway, "alice", tmp_path, "s3", "ls", "--recursive", f"s3://{bucket}/")
    assert listed.returncode == 0 and "mine/report.txt" in listed.stdout
    assert "mine/report.txt" not in aws(gateway, "bob", tmp_path, "s3", "ls", "--recursive", f"s3://{bucket}/").stdout


# -- multipart uploads are their initiator's ---------------------------------------------------


def test_another_user_can_neither_read_nor_complete_an_upload(clients: dict, root: Path, bucket: str) -> None:
    as_user(ALICE, "chmod", "777", str(root / bucket))  # bob may write the bucket, not alice's upload
    alice, bob = clients["alice"], clients["bob"]
    upload_id = alice.create_multipart_upload(Bucket=bucket, Key="big")["UploadId"]
    part = alice.upload_part(Bucket=bucket, Key="big", UploadId=upload_id, PartNumber=1, Body=b"a" * 1000)
    parts = {"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}
    assert (
        code_of(bob.upload_part, Bucket=bucket, Key="big", UploadId=upload_id, PartNumber=2, Body=b"b")
        == "AccessDenied"
    )
    assert code_of(bob.list_parts, Bucket=bucket, Key="big", UploadId=upload_id) == "AccessDenied"
    assert (
        code_of(bob.complete_multipart_upload, Bucket=bucket, Key="big", UploadId=upload_id, MultipartUpload=parts)
        == "AccessDenied"
    )
    assert code_of(bob.abort_multipart_upload, Bucket=bucket, Key="big", UploadId=upload_id) == "AccessDenied"
    assert bob.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert [u["UploadId"] for u in alice.list_multipart_uploads(Bucket=bucket)["Uploads"]] == [upload_id]
    upload_dir = root / ".aifgw" / "state" / bucket / "uploads" / upload_id
    assert as_user(BOB, "ls", str(upload_dir)).returncode != 0
    alice.complete_multipart_upload(Bucket=bucket, Key="big", UploadId=upload_id, MultipartUpload=parts)
    assert owner(root / bucket / "big") == (ALICE, ALICE)
    assert (root / bucket / "big").read_bytes() == b"a" * 1000


def test_a_user_without_ids_acts_on_anothers_upload_with_the_owners_rights(
    clients: dict, root: Path, bucket: str
) -> None:
    # admin acts with the gateway's (root's) ids; bob's upload directory is bob's to rearrange,
    # so what admin does in it, it does as bob.
    as_user(ALICE, "chmod", "777", str(root / bucket))
    (root / bucket / "alice-only").mkdir()
    os.chown(root / bucket / "alice-only", ALICE, ALICE)
    bob, admin = clients["bob"], clients["admin"]
    upload_id = bob.create_multipart_upload(Bucket=bucket, Key="alice-only/by-bob")["UploadId"]
    part = admin.upload_part(Bucket=bucket, Key="alice-only/by-bob", UploadId=upload_id, PartNumber=1, Body=b"p")
    upload_dir = root / ".aifgw" / "state" / bucket / "uploads" / upload_id
    assert {p.stat().st_uid for p in upload_dir.iterdir()} == {BOB}
    parts = {"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}
    # bob may not write alice's directory: neither may admin, on bob's behalf.
    assert (
        code_of(
            admin.complete_multipart_upload,
            Bucket=bucket,
            Key="alice-only/by-bob",
            UploadId=upload_id,
            MultipartUpload=parts,
        )
        == "AccessDenied"
    )
    assert not (root / bucket / "alice-only" / "by-bob").exists()
    bob.abort_multipart_upload(Bucket=bucket, Key="alice-only/by-bob", UploadId=upload_id)


# -- root squash and the gateway's own ids -----------------------------------------------------


def test_uid_0_is_squashed_to_nobody_unless_allowed(clients: dict, root: Path, bucket: str) -> None:
    root_only = root / bucket / "rootonly"
    root_only.mkdir()
    os.chown(root_only, 0, 0)
    root_only.chmod(0o755)
    assert code_of(clients["squashed"].put_object, Bucket=bucket, Key="rootonly/x", Body=b"x") == "AccessDenied"
    clients["trusted"].put_object(Bucket=bucket, Key="rootonly/x", Body=b"x")
    assert owner(root_only / "x") == (0, 0)


def test_a_user_without_posix_ids_acts_as_the_gateway(clients: dict, root: Path, bucket: str) -> None:
    as_user(ALICE, "chmod", "700", str(root / bucket))
    clients["admin"].put_object(Bucket=bucket, Key="by-admin", Body=b"a")
    assert owner(root / bucket / "by-admin") == (0, 0)


# -- no credentials leak between requests sharing threads and workers ---------------------------


def test_concurrent_users_each_write_as_themselves(clients: dict, root: Path, bucket: str) -> None:
    writers = [("alice", ALICE), ("bob", BOB), ("carol", CAROL), ("admin", 0)]
    for name, _ in writers:
        (root / bucket / "mix" / name).mkdir(parents=True)
        (root / bucket / "mix" / name).chmod(0o777)

    def put(i: int) -> None:
        name, _ = writers[i % len(writers)]
        clients[name].put_object(Bucket=bucket, Key=f"mix/{name}/{i}", Body=os.urandom(1000 + i))

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, range(200)))
    for name, uid in writers:
        files = list((root / bucket / "mix" / name).iterdir())
        assert len(files) == 50
        assert {f.stat().st_uid for f in files} == {uid}, name


def test_concurrent_reads_never_borrow_another_requests_rights(clients: dict, root: Path, bucket: str) -> None:
    clients["alice"].put_object(Bucket=bucket, Key="only-alice", Body=b"a" * 5000)
    assert as_user(ALICE, "chmod", "600", str(root / bucket / "only-alice")).returncode == 0

    def get(i: int) -> tuple[str, str]:
        name = ("alice", "bob", "admin", "carol")[i % 4]
        try:
            clients[name].get_object(Bucket=bucket, Key="only-alice")["Body"].read()
            return name, "ok"
        except ClientError as exc:
            return name, exc.response["Error"]["Code"]

    with ThreadPoolExecutor(16) as pool:
        outcomes = set(pool.map(get, range(400)))
    # alice (the owner) and admin (the gateway's ids) always read it; bob and carol never do,
    # though their requests ran on the same worker threads as the others', in between.
    assert outcomes == {("alice", "ok"), ("admin", "ok"), ("bob", "AccessDenied"), ("carol", "AccessDenied")}


# The system's interpreter of this version, with this checkout and the venv's packages on
# PYTHONPATH (inherited by spawned workers): the venv's own interpreter may be a build under
# /root (mode 0700) that other users cannot run.
USER_PYTHON = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"


def user_python_env() -> dict[str, str]:
    site_packages = next(p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix))
    return {**os.environ, "PYTHONPATH": f"{Path(__file__).resolve().parents[2]}{os.pathsep}{site_packages}"}


def python_as(uid: int, code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with this checkout's package as a local user (a job on a compute node)."""
    return subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", USER_PYTHON, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        env=user_python_env(),
    )


def test_a_job_writing_the_tree_directly_publishes_as_itself(clients: dict, root: Path, bucket: str) -> None:
    # aif_gateway.ckpt's filesystem door, run by alice's job: no lock file of the gateway's is
    # hers to open, the temp file and the object are hers, and the gateway serves it at once.
    done = python_as(
        ALICE,
        f"""
from pathlib import Path
from aif_gateway.store.direct import DirectBucket
bucket = DirectBucket.open(Path({str(root)!r}), {bucket!r})
writer = bucket.writer("job/out.bin", 11)
writer.write_at(memoryview(b"from a job!"), 0, 0)
writer.commit([11], "application/octet-stream")
""",
    )
    assert done.returncode == 0, done.stderr
    assert owner(root / bucket / "job" / "out.bin") == (ALICE, ALICE)
    assert clients["alice"].get_object(Bucket=bucket, Key="job/out.bin")["Body"].read() == b"from a job!"
    # Bob's job may not write alice's bucket, directly either.
    done = python_as(
        BOB,
        f"""
from pathlib import Path
from aif_gateway.store.direct import DirectBucket
bucket = DirectBucket.open(Path({str(root)!r}), {bucket!r})
writer = bucket.writer("job/bob.bin", 3)
writer.write_at(memoryview(b"bob"), 0, 0)
writer.commit([3], "application/octet-stream")
""",
    )
    assert done.returncode != 0 and "Permission denied" in done.stderr
    assert not (root / bucket / "job" / "bob.bin").exists()


# -- a local user cannot make the gateway touch what they could not -------------------------


@pytest.fixture
def victim(root: Path) -> Iterator[Path]:
    """A root-owned file the attacker (bob) may read but never write."""
    path = root / f"victim-{os.urandom(4).hex()}"
    path.write_bytes(b"root's data\n")
    path.chmod(0o644)
    yield path
    path.unlink(missing_ok=True)


def test_a_symlinked_upload_data_file_writes_nothing_outside(
    clients: dict, root: Path, bucket: str, victim: Path
) -> None:
    as_user(ALICE, "chmod", "777", str(root / bucket))
    bob = clients["bob"]
    upload_id = bob.create_multipart_upload(Bucket=bucket, Key="evil")["UploadId"]
    upload_dir = root / ".aifgw" / "state" / bucket / "uploads" / upload_id
    # The upload's directory is bob's: he swaps its data file for a link to the victim.
    assert as_user(BOB, "sh", "-c", f"rm -f {upload_dir}/data && ln -s {victim} {upload_dir}/data").returncode == 0
    part = b"p" * (5 << 20)  # a full-size part: it goes into the data file
    for who in ("bob", "admin"):  # bob himself, and a user acting with the gateway's ids
        assert (
            code_of(clients[who].upload_part, Bucket=bucket, Key="evil", UploadId=upload_id, PartNumber=1, Body=part)
            == "AccessDenied"
        )
    assert victim.read_bytes() == b"root's data\n"


def test_a_forged_part_record_cannot_publish_another_file(clients: dict, root: Path, bucket: str, victim: Path) -> None:
    as_user(ALICE, "chmod", "777", str(root / bucket))
    bob = clients["bob"]
    upload_id = bob.create_multipart_upload(Bucket=bucket, Key="stolen")["UploadId"]
    part = bob.upload_part(Bucket=bucket, Key="stolen", UploadId=upload_id, PartNumber=1, Body=b"x")
    record = root / ".aifgw" / "state" / bucket / "uploads" / upload_id / "part-00001.json"
    forged = record.read_text().replace('"file": "data"', f'"file": "../../../../../..{victim}"')
    forged = forged.replace('"file": "part-00001.', '"file": "../../../../../..' + str(victim) + '", "x": "')
    assert (
        as_user(BOB, "sh", "-c", f"cat > {record}.new <<'EOF'\n{forged}\nEOF\nmv {record}.new {record}").returncode == 0
    )
    parts = {"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}
    for who in ("bob", "admin"):  # bob himself, and a user acting with the gateway's ids
        assert (
            code_of(
                clients[who].complete_multipart_upload,
                Bucket=bucket,
                Key="stolen",
                UploadId=upload_id,
                MultipartUpload=parts,
            )
            == "InvalidPart"
        )
    assert not (root / bucket / "stolen").exists()
    assert victim.read_bytes() == b"root's data\n"


def test_the_state_directories_are_out_of_local_users_reach(clients: dict, root: Path, bucket: str) -> None:
    clients["alice"].put_object(Bucket=bucket, Key="k", Body=b"k")
    state = root / ".aifgw" / "state" / bucket
    # Nothing of the gateway's is inside the bucket any more, and what is outside cannot be
    # renamed, listed or replaced by a user.
    assert sorted(p.name for p in (root / bucket).iterdir()) == ["k"]
    for command in (
        ["mv", str(state / "tmp"), str(state / "tmp2")],
        ["ls", str(state / "tmp")],
        ["ls", str(state / "uploads")],
        ["mv", str(state), str(root / bucket / "stolen")],
        ["touch", str(state / "locks")],
    ):
        assert as_user(ALICE, *command).returncode != 0, command
    assert stat.S_IMODE(state.stat().st_mode) == 0o711 and state.stat().st_uid == 0
    # An .aifgw planted in the bucket (the old layout's place) is ignored: a PUT goes on
    # through the gateway's own tmp/, not through the planted link.
    assert (
        as_user(ALICE, "sh", "-c", f"mkdir {root / bucket}/.aifgw && ln -s /etc {root / bucket}/.aifgw/tmp").returncode
        == 0
    )
    clients["alice"].put_object(Bucket=bucket, Key="after", Body=b"safe")
    assert (root / bucket / "after").read_bytes() == b"safe"
    assert not any(p.name.startswith("put.") for p in Path("/etc").iterdir())


def test_a_mapped_bucket_refuses_a_planted_state_directory(
    start_gateway, credentials: Credentials, tmp_path: Path
) -> None:
    # /dev/shm is another filesystem than /tmp: the mapped bucket keeps its state inside.
    mapped = Path(tempfile.mkdtemp(prefix="aif-mapped-", dir="/dev/shm"))
    try:
        mapped.chmod(0o777)
        config = tmp_path / "gw.toml"
        config.write_text(f'[buckets]\nscratch = "{mapped}"\n')
        root = tmp_path / "root"
        gw = start_gateway(root=root, extra_args=("--config", str(config)))
        admin = boto3_client(gw.url, credentials)
        admin.put_object(Bucket="scratch", Key="first", Body=b"1")
        internal = mapped / ".aifgw"
        assert internal.is_dir() and internal.stat().st_uid == 0
        # A user who may write the bucket renames the gateway's directory away and plants theirs.
        assert (
            as_user(
                BOB, "sh", "-c", f"mv {internal} {mapped}/moved && mkdir -p {internal}/tmp && chmod -R 777 {internal}"
            ).returncode
            == 0
        )
        assert code_of(admin.put_object, Bucket="scratch", Key="second", Body=b"2") == "InternalError"
        assert list((internal / "tmp").iterdir()) == []
        assert not (mapped / "second").exists()
        assert "internal state directory refused" in gw.stderr()
        admin.close()
    finally:
        shutil.rmtree(mapped, ignore_errors=True)


# -- how users get their ids ---------------------------------------------------------------------


def serve_refusal(tmp_path: Path, users: str, config: str = "") -> subprocess.CompletedProcess[str]:
    (tmp_path / "users.toml").write_text(users)
    (tmp_path / "users.toml").chmod(0o600)
    (tmp_path / "gw.toml").write_text(config)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "aif_gateway",
            "serve",
            "--root",
            str(tmp_path / "root"),
            "--listen",
            "127.0.0.1:1",
            "--users",
            str(tmp_path / "users.toml"),
            "--config",
            str(tmp_path / "gw.toml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_require_posix_ids_refuses_a_user_without_ids(tmp_path: Path) -> None:
    done = serve_refusal(
        tmp_path,
        '[[users]]\nname = "x"\naccess_key = "AKX0000000000000001"\nsecret_key = "s"\n',
        "[server]\nrequire_posix_ids = true\n",
    )
    assert done.returncode == 2
    assert "user 'x' has no POSIX ids" in done.stderr and "posix_user" in done.stderr


def test_an_unknown_posix_user_is_refused_at_start(tmp_path: Path) -> None:
    done = serve_refusal(
        tmp_path,
        '[[users]]\nname = "x"\naccess_key = "AKX0000000000000001"\nsecret_key = "s"\n'
        'posix_user = "no-such-user-aif"\n',
    )
    assert done.returncode == 2
    assert "getent passwd no-such-user-aif" in done.stderr


@pytest.fixture
def nss_user() -> Iterator[tuple[str, int, int]]:
    """A real login (passwd + group files, as NSS serves them) with one supplementary group."""
    name, group = f"aif{os.urandom(3).hex()}", f"aifg{os.urandom(3).hex()}"
    subprocess.run(["groupadd", "-g", "4310", group], check=True)
    subprocess.run(["useradd", "-M", "-u", "4300", "-U", "-G", group, name], check=True)
    try:
        yield name, 4300, 4310
    finally:
        subprocess.run(["userdel", name], check=False)
        subprocess.run(["groupdel", group], check=False)


def test_posix_user_is_resolved_through_nss(
    start_gateway, reachable_dir: Path, tmp_path: Path, nss_user: tuple[str, int, int]
) -> None:
    name, uid, group = nss_user
    users = tmp_path / "users.toml"
    users.write_text(
        f'[[users]]\nname = "n"\naccess_key = "AKNSS00000000000001"\nsecret_key = "nss"\nposix_user = "{name}"\n'
    )
    users.chmod(0o600)
    gw = start_gateway(root=reachable_dir, extra_args=("--users", str(users)))
    client = boto3_client(gw.url, Credentials("AKNSS00000000000001", "nss"))
    client.create_bucket(Bucket="nss")
    grouped = reachable_dir / "nss" / "grouped"
    grouped.mkdir()
    os.chown(grouped, 0, group)
    grouped.chmod(0o770)  # only the supplementary group gets in
    client.put_object(Bucket="nss", Key="grouped/k", Body=b"k")
    st = (grouped / "k").stat()
    assert st.st_uid == uid and st.st_gid != group  # the user's primary group: no setgid here
    client.close()


def test_a_personal_gateway_acts_as_its_own_user_for_every_key(reachable_dir: Path) -> None:
    # Started by alice on a login node: whatever ids the users file names, she cannot act as
    # anyone else, and the start says so.
    os.chown(reachable_dir, ALICE, ALICE)
    users = reachable_dir / "users.toml"
    users.write_text(users_toml())
    users.chmod(0o600)
    os.chown(users, ALICE, ALICE)
    port = free_port()
    log = reachable_dir / "gateway.log"
    command = [
        USER_PYTHON,
        "-m",
        "aif_gateway",
        "serve",
        "--root",
        str(reachable_dir / "root"),
        "--listen",
        f"127.0.0.1:{port}",
        "--workers",
        "1",
        "--users",
        str(users),
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["setpriv", f"--reuid={ALICE}", f"--regid={ALICE}", "--clear-groups", *command],
            stdout=out,
            stderr=out,
            start_new_session=True,
            env=user_python_env(),
            cwd=reachable_dir,
        )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        assert proc.poll() is None, log.read_text()
        bob = boto3_client(f"http://127.0.0.1:{port}", USERS["bob"][0])
        bob.create_bucket(Bucket="personal")
        bob.put_object(Bucket="personal", Key="k", Body=b"k")
        bob.close()
        assert owner(reachable_dir / "root" / "personal" / "k") == (ALICE, ALICE)
        assert "every key acts as this process's user" in log.read_text()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
