"""Driver faults on a real Ray cluster (the session's, joined by subprocess drivers): a
`spex-ray solve` killed with SIGKILL mid-run resumes on the same command without redoing a
finished row and ends where an uninterrupted run ends; the dead driver's actors go with it;
actor warnings reach the driver; actors that cannot start say why, in bounded time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from spex_ray.actors.pool import ActorResources
from spex_ray.actors.reward import RewardActor
from spex_ray.actors.startup import ActorStartError, wait_for_start
from spex_ray.config import Config
from spex_ray.io import TRACE_COLUMNS

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SOLVE = [
    "solve", "--config", str(REPO / "configs" / "sim_a6000.yaml"), "--limit", "5",
    "--set", "policy.sim.time_scale=0.25", "--set", "run.concurrency=2", "--set", "run.progress=log",
    "--set", "spex.speculate=true", "--set", "spex.allocator=utility",
]  # fmt: skip
# What a rerun recomputes identically: the tree's nodes (not request ids, times, the prefix
# cache's hits, or which of main and speculation generated a node first).
TREE_COLUMNS = ("query", "node", "depth", "terminal", "answered", "seed", "finish_reason", "prompt_tokens", "completion_tokens")  # fmt: skip
RELATIVE = ("enqueue_s", "start_s", "end_s")


def _driver_env(ray_session) -> dict[str, str]:
    address = ray_session.get_runtime_context().gcs_address
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))
    return {**os.environ, "RAY_ADDRESS": address, "PYTHONPATH": path}


def _solve(env: dict[str, str], output: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "spex_ray.cli", *SOLVE, "--output", str(output)]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _journal(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def _wait_for_rows(output: Path, rows: int, process: subprocess.Popen, timeout_s: float = 240) -> None:
    journal = output / "results.jsonl"
    deadline = time.monotonic() + timeout_s
    while not (journal.exists() and len(_journal(journal)) >= rows):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run journaled too few rows in time"
        time.sleep(0.05)


def _alive_actors_of_other_jobs(ray_session) -> list[dict]:
    from ray._private import state

    own = ray_session.get_runtime_context().get_job_id()
    return [a for a in state.actors().values() if a["JobID"] != own and a["State"] != "DEAD"]


def _absolute(row: dict) -> dict:
    """A trace row without its batch-relative times (filled in only when trace.parquet is written)."""
    return {key: value for key, value in row.items() if key not in RELATIVE}


def _by_id(row: dict) -> str:
    return row["request_id"]


def _tree(trace: list[dict]) -> dict[tuple[str, str], tuple]:
    used = [row for row in trace if row["outcome"] in ("used", "promoted")]
    return {(row["query"], row["node"]): tuple(row[c] for c in TREE_COLUMNS) for row in used}


def test_a_driver_killed_mid_run_resumes_on_the_same_command(ray_session, tmp_path):
    env = _driver_env(ray_session)
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    first = _solve(env, killed)
    _wait_for_rows(killed, 2, first)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    saved = {row["id"]: row for row in _journal(killed / "results.jsonl")}
    saved_trace = [row for row in _journal(killed / "trace.jsonl") if row["query"] in saved]
    assert 2 <= len(saved) < 5
    with open(killed / "results.jsonl", "a") as journal:  # as if killed in the middle of a write
        journal.write('{"id": "sim-4", "status": "o')
    with open(killed / "trace.jsonl", "a") as journal:
        journal.write('{"query": "sim-4", "node": ')

    deadline = time.monotonic() + 60  # the dead driver's actors (engine, trees, allocator) go
    while (lingering := _alive_actors_of_other_jobs(ray_session)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert lingering == [], [(a["ActorClassName"], a["Name"], a["IsDetached"]) for a in lingering]

    rerun = _solve(env, killed)  # the same command
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode in (0, 1), err
    assert f"{len(saved)} reused from {killed}" in out and "Traceback" not in out + err
    uninterrupted = _solve(env, whole)
    uninterrupted.communicate(timeout=300)
    assert uninterrupted.returncode in (0, 1)

    resumed = {row["id"]: row for row in pq.read_table(killed / "results.parquet").to_pylist()}
    fresh = {row["id"]: row for row in pq.read_table(whole / "results.parquet").to_pylist()}
    assert all(resumed[pid] == row for pid, row in saved.items()), "finished rows are kept as they were"
    assert sorted(resumed) == sorted(fresh) == [f"sim-{i}" for i in range(5)]
    assert {pid: r["answer"] for pid, r in resumed.items()} == {pid: r["answer"] for pid, r in fresh.items()}
    resumed_trace = pq.read_table(killed / "trace.parquet").to_pylist()
    kept = [_absolute(row) for row in resumed_trace if row["query"] in saved]
    assert sorted(kept, key=_by_id) == sorted(map(_absolute, saved_trace), key=_by_id)
    assert set(resumed_trace[0]) == set(TRACE_COLUMNS)
    assert _tree(resumed_trace) == _tree(pq.read_table(whole / "trace.parquet").to_pylist())


def test_actor_warnings_reach_the_driver(ray_session):
    script = (
        "import logging, ray\n"
        "from spex_ray import api\n"
        "api._ensure_ray('')\n"
        "@ray.remote(num_cpus=0)\n"
        "class Speaker:\n"
        "    def speak(self):\n"
        "        logging.getLogger('spex_ray.tree.speculate').warning('speculation is off: no budget')\n"
        "speaker = Speaker.remote()\n"
        "ray.get(speaker.speak.remote())\n"
        "import time; time.sleep(3)\n"  # the log monitor forwards worker lines about once a second
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=_driver_env(ray_session),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "speculation is off: no budget" in done.stderr


def test_an_actor_the_cluster_cannot_host_fails_in_bounded_time_naming_the_resource(ray_session):
    reward = Config.load(None, ["reward.kind=prm", "reward.model=some/prm"]).reward
    resources = ActorResources(num_gpus=0.0, num_cpus=64.0)
    actor = RewardActor.options(num_cpus=64).remote(reward, "reward-0")
    began = time.monotonic()
    with pytest.raises(ActorStartError) as info:
        wait_for_start([actor], "reward", resources, timeout_s=1.0)
    assert time.monotonic() - began < 30
    assert str(info.value) == (
        "reward-0 did not start within 1 s: 1 actor needs CPU 64 (64 each); the cluster has CPU 2"
    )


def test_a_model_path_that_does_not_exist_is_one_line_naming_it(ray_session, tmp_path):
    command = [sys.executable, "-m", "spex_ray.cli", "solve", "--problem", "What is 1 + 1?"]
    command += ["--set", "policy.model=/nonexistent/model", "--output", str(tmp_path)]
    done = subprocess.run(command, env=_driver_env(ray_session), capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stdout + done.stderr
    assert done.stderr.splitlines()[-1] == (
        "spex-ray: error: no engine started: engine-0 failed to start: "
        "ValueError: model directory '/nonexistent/model' does not exist"
    )
