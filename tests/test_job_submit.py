"""`ray job submit --working-dir . -- python -m spex_ray.cli solve ...` against a real
local head started with `ray start --head` (its own ports and temp dir)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_dashboard(url: str, head: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if head.poll() is not None:
            raise RuntimeError(f"ray start exited with {head.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/api/version", timeout=2):
                return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"the Ray dashboard at {url} did not come up")


@pytest.fixture
def ray_head(tmp_path):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    dashboard = free_port()
    temp_dir = Path("/tmp") / f"spex_ray_job_{os.getpid()}"  # short: unix socket paths are limited
    # Every port of its own: the suite's session Ray (same machine) holds the default ones.
    ports = {
        name: free_port()
        for name in (
            "port",
            "node-manager-port",
            "object-manager-port",
            "dashboard-agent-listen-port",
            "dashboard-agent-grpc-port",
            "metrics-export-port",
            "runtime-env-agent-port",
            "ray-client-server-port",
        )
    }
    cmd = [
        str(BIN / "ray"), "start", "--head", "--block", *(f"--{name}={port}" for name, port in ports.items()),
        f"--dashboard-port={dashboard}", "--dashboard-host=127.0.0.1", "--num-cpus=2",
        f"--temp-dir={temp_dir}", "--include-dashboard=true",
        "--min-worker-port=20000", "--max-worker-port=20999",
    ]  # fmt: skip
    log = open(tmp_path / "ray_head.log", "w")  # noqa: SIM115 - closed with the head
    head = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{dashboard}"
    try:
        wait_for_dashboard(url, head)
        yield url, env
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_ray_job_submit_runs_a_solve(ray_head, tmp_path):
    url, env = ray_head
    dataset = tmp_path / "two.jsonl"
    rows = [
        {"question": "What is 4 + 5?", "answer": "#### 9"},
        {"question": "What is 3 * 3?", "answer": "#### 9"},
    ]
    dataset.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "job_run"
    entrypoint = [
        "python", "-m", "spex_ray.cli", "solve", "--dataset", str(dataset), "--output", str(out),
        "--set", "search.width=2", "--set", "search.max_depth=2", "--set", "policy.max_new_tokens=16",
        "--set", "run.concurrency=2",
    ]  # fmt: skip
    cmd = [str(BIN / "ray"), "job", "submit", "--address", url, "--working-dir", str(REPO), "--", *entrypoint]
    deadline = time.time() + 120
    while True:  # the dashboard answers before its job agent has registered
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        if "No available agent" not in proc.stderr + proc.stdout or time.time() > deadline:
            break
        time.sleep(2)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "succeeded" in proc.stdout
    assert "results:" in proc.stdout
    rows = pq.read_table(out / "results.parquet").to_pylist()
    assert [r["status"] for r in rows] == ["ok", "ok"]
