"""The Slurm facts the staging hook relies on, shown with real jobs on a private Slurm 22.05:
GPU jobs see their GPU; a job whose burst buffer stage-in is running stays PENDING
(BurstBufferStageIn) without nodes or GPUs, and starts once slurm_bb_data_in returns; a failing
data_in holds the job with its message as the reason; and the arguments each slurm_bb_* hook gets.
"""

from __future__ import annotations

import pwd
import re
import time
import uuid
from collections.abc import Callable

import pytest

from .cluster import NODE_NAME, TEST_USER, SlurmCluster

# The arguments Slurm 22.05 passes to each hook, as recording_bb.lua saw them (all strings).
# Slurm's burst_buffer.lua.example of that era names more (uid and gid for data_in, job_process
# and the others): 22.05 does not pass them. Later releases append uid, gid and a job_info table
# (the current example), so on them only this prefix is checked.
HOOK_ARGS_22_05 = {
    "slurm_bb_job_process": ("job_script",),
    "slurm_bb_setup": ("job_id", "uid", "gid", "pool", "bb_size", "job_script"),
    "slurm_bb_data_in": ("job_id", "job_script"),
    "slurm_bb_paths": ("job_id", "job_script", "path_file"),
    "slurm_bb_pre_run": ("job_id", "job_script"),
    "slurm_bb_post_run": ("job_id", "job_script"),
    "slurm_bb_data_out": ("job_id", "job_script"),
    "slurm_bb_job_teardown": ("job_id", "job_script", "hurry"),
}
# The order a successful burst buffer job goes through them.
HOOK_ORDER = (
    "slurm_bb_job_process",
    "slurm_bb_setup",
    "slurm_bb_data_in",
    "slurm_bb_paths",
    "slurm_bb_pre_run",
    "slurm_bb_post_run",
    "slurm_bb_data_out",
    "slurm_bb_job_teardown",
)


def env_lines(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def slurm_version(cluster: SlurmCluster) -> str:
    return cluster.run("sinfo", "--version").stdout.split()[-1]


def hook_calls(cluster: SlurmCluster, job_id: int) -> list[tuple[str, list[str]]]:
    """(hook, its arguments as 'type:value') for ``job_id``, in call order, from calls.log."""
    calls = []
    for line in (cluster.etc / "calls.log").read_text().splitlines():
        name, _count, *args = line.split("\t")
        args = [a for a in args if a]
        if f"string:{job_id}" in args[:1] or any(a.endswith(f"/job.{job_id}/script") for a in args):
            calls.append((name, args))
    return calls


def eventually(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not true after {timeout}s"
        time.sleep(0.1)


def gres_used(cluster: SlurmCluster) -> str:
    return cluster.run("sinfo", "-h", "-N", "-n", NODE_NAME, "-O", "GresUsed").stdout.strip()


def test_gpu_job_runs_as_the_user_and_sees_its_gpu(cluster: SlurmCluster) -> None:
    job = cluster.sbatch(
        "#!/bin/sh\necho CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES\n"
        "echo SLURM_JOB_GPUS=$SLURM_JOB_GPUS\necho UID=$(id -u)\n",
        "--gres=gpu:1",
    )
    record = cluster.wait_for(job, "COMPLETED", "FAILED", timeout=30)
    output = cluster.output(job)
    assert record["job_state"] == "COMPLETED", output
    seen = env_lines(output)
    assert seen["CUDA_VISIBLE_DEVICES"] in ("0", "1")
    assert seen["SLURM_JOB_GPUS"] == seen["CUDA_VISIBLE_DEVICES"]
    assert seen["UID"] == str(pwd.getpwnam(TEST_USER).pw_uid)


def test_job_waits_in_stage_in_without_resources_until_data_in_returns(cluster: SlurmCluster) -> None:
    ready = cluster.jobs_dir / f"staged-{uuid.uuid4().hex}"
    job = cluster.sbatch(
        f"#!/bin/sh\n#BB_LUA wait_for {ready}\n"
        "echo AIFGW_BB_PATHS=$AIFGW_BB_PATHS\necho CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES\n",
        "--gres=gpu:1",
    )
    cluster.wait_for(job, "PENDING", reason="BurstBufferStageIn", timeout=30)
    eventually(lambda: hook_calls(cluster, job)[-1][0] == "slurm_bb_data_in")

    # While data_in runs (and the node is free) the job holds neither the node nor a GPU.
    for _ in range(10):
        record = cluster.job(job)
        assert (record["job_state"], record["state_reason"]) == ("PENDING", "BurstBufferStageIn")
        assert record["burst_buffer_state"] == "staging-in"
        assert record["nodes"] == "" and record["gres_detail"] == []
        assert gres_used(cluster) == "gpu:0"
        time.sleep(0.2)
    shown = cluster.show_job(job)
    # 22.05 prints an empty NodeList (and SchedNodeList=<node>, the node it plans to use).
    assert re.search(r"^\s*NodeList=(\(null\))?\s", shown, re.MULTILINE), shown
    assert "GRES=" not in shown

    released_at = time.time()
    ready.touch()
    record = cluster.wait_for(job, "COMPLETED", "FAILED", timeout=30)
    output = cluster.output(job)
    assert record["job_state"] == "COMPLETED", output
    assert record["start_time"] >= int(released_at)
    seen = env_lines(output)
    assert seen["AIFGW_BB_PATHS"] == str(job), "slurm_bb_paths did not reach the job's environment"
    assert seen["CUDA_VISIBLE_DEVICES"] in ("0", "1")


def test_failed_data_in_holds_the_job_with_its_message(cluster: SlurmCluster) -> None:
    message = f"no such dataset s3://missing/{uuid.uuid4().hex}"
    job = cluster.sbatch(f"#!/bin/sh\n#BB_LUA fail {message}\necho ran\n", "--gres=gpu:1")
    record = cluster.wait_for(job, "PENDING", reason="BurstBufferOperation", timeout=30)
    # Held (priority 0, as `scontrol hold` does), the message in the job's state description.
    assert record["priority"] == 0
    assert record["state_description"] == f"burst_buffer/lua: slurm_bb_data_in: {message}"
    assert cluster.state(job) == ("PENDING", record["state_description"])
    assert cluster.squeue("-h", "-j", str(job), "-o", "%r").strip() == record["state_description"]
    # scontrol prints it with '_' for spaces; the SystemComment keeps a dated copy.
    shown = cluster.show_job(job)
    assert f"Reason={record['state_description'].replace(' ', '_')} " in shown
    assert f"burst_buffer/lua: data_in: {message}" in shown

    time.sleep(1.5)  # several scheduling passes: it stays held, never runs
    record = cluster.job(job)
    assert (record["job_state"], record["nodes"]) == ("PENDING", "")
    assert not (cluster.jobs_dir / f"slurm-{job}.out").exists()
    cluster.run("scancel", str(job))


def test_hooks_get_the_22_05_arguments(cluster: SlurmCluster) -> None:
    account = pwd.getpwnam(TEST_USER)
    job = cluster.sbatch("#!/bin/sh\n#BB_LUA note record the hooks\ntrue\n", "--gres=gpu:1")
    cluster.wait_for(job, "COMPLETED", timeout=30)
    eventually(lambda: hook_calls(cluster, job)[-1][0] == "slurm_bb_job_teardown")
    calls = hook_calls(cluster, job)
    assert tuple(name for name, _ in calls) == HOOK_ORDER

    # The script Slurm hands the hooks is its own copy in StateSaveLocation (owned by root).
    script = f"{cluster.state_dir}/hash.{job % 10}/job.{job}/script"
    values = {
        "job_id": f"string:{job}",
        "job_script": f"string:{script}",
        "uid": f"string:{account.pw_uid}",
        "gid": f"string:{account.pw_gid}",
        "pool": "string:(null)",
        "bb_size": "string:0",
        "hurry": "string:false",
    }
    exact = slurm_version(cluster).startswith("22.05.")
    for name, args in calls:
        expected = HOOK_ARGS_22_05[name]
        if exact:
            assert len(args) == len(expected), (name, args)
        for arg_name, got in zip(expected, args):
            if arg_name == "path_file":
                assert got == f"string:{cluster.state_dir}/hash.{job % 10}/job.{job}/path", (name, args)
            else:
                assert got == values[arg_name], (name, arg_name, args)

    # slurm_bb_get_status: 22.05 passes only the words after `scontrol show bbstat`.
    assert cluster.scontrol("show", "bbstat", "alpha", "beta") == "recording_bb status\n"
    last = (cluster.etc / "calls.log").read_text().splitlines()[-1].split("\t")
    if exact:
        assert last == ["slurm_bb_get_status", "2", "string:alpha", "string:beta"]
    else:
        assert last[0] == "slurm_bb_get_status" and last[-2:] == ["string:alpha", "string:beta"]


@pytest.fixture(autouse=True)
def _no_burst_buffer_left(cluster: SlurmCluster) -> None:
    """Each test starts with no job and no buffer left by the one before."""
    cluster.run("scancel", "--user", TEST_USER, check=False)
    eventually(lambda: "JobID=" not in cluster.scontrol("show", "burst"))
