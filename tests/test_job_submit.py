"""The README's cluster steps against a real local head (its own ports and temp dir): the
token made by its `ray get-auth-token --generate` line, the head started with
RAY_AUTH_MODE=token, and its `ray job submit` line run verbatim, writing to a file:// URI."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from spex_ray.io import read_results

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
AUTH_ENV = (
    "RAY_AUTH_MODE",
    "RAY_AUTH_TOKEN",
    "RAY_AUTH_TOKEN_PATH",
    "RAY_ADDRESS",
    "RAY_JOB_CONFIG_JSON_ENV_VAR",
)


def readme_cluster_block() -> list[str]:
    """The lines of the README's code block that sets up a cluster and submits a job."""
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    (block,) = [b for b in blocks if "ray get-auth-token" in b and "ray job submit" in b]
    return block.splitlines()


def readme_line(start: str) -> str:
    """The first line of the README's cluster block that starts with `start`."""
    return next(line for line in readme_cluster_block() if line.startswith(start))


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
        except urllib.error.HTTPError:  # up, and asking for the token
            return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"the Ray dashboard at {url} did not come up")


def clean_env(home: Path) -> dict[str, str]:
    """This environment without any Ray address or auth setting, HOME at `home`."""
    env = {k: v for k, v in os.environ.items() if k not in AUTH_ENV}
    return {**env, "HOME": str(home), "PATH": f"{BIN}:{os.environ['PATH']}"}


@pytest.fixture
def ray_head(tmp_path):
    """A head started as the README says (RAY_AUTH_MODE=token, the token its
    `ray get-auth-token --generate` line writes to ~/.ray/auth_token), on ports of its own."""
    home = tmp_path / "home"
    home.mkdir()
    env = {**clean_env(home), "RAY_AUTH_MODE": "token"}
    generate = readme_line("ray get-auth-token")
    subprocess.run(["bash", "-c", generate], env=env, check=True, capture_output=True, timeout=60)
    assert (home / ".ray" / "auth_token").exists()
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
        yield url, f"127.0.0.1:{ports['port']}", env
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def submit(line: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run a `ray job submit` line with bash in the repository, as a user would."""
    deadline = time.time() + 120
    while True:  # the dashboard answers before its job agent has registered
        proc = subprocess.run(
            ["bash", "-c", line], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
        )
        if "No available agent" not in proc.stderr + proc.stdout or time.time() > deadline:
            return proc
        time.sleep(2)


def test_the_readme_job_command_runs_verbatim_with_token_auth(ray_head, tmp_path):
    url, gcs, env = ray_head
    runs = f"file://{tmp_path}/runs"
    line = readme_line("ray job submit --working-dir . -- spex-ray solve --config configs/sim_h100.yaml")
    proc = submit(line, {**env, "RAY_ADDRESS": url, "RUNS": runs})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "succeeded" in proc.stdout
    assert f"results: {runs}/sim-h100/results.parquet" in proc.stdout
    rows = read_results(f"{runs}/sim-h100")
    assert len(rows) == 8 and {r["status"] for r in rows} == {"ok"}

    relative = line.replace("${RUNS:?}/sim-h100", "runs/sim-h100")
    proc = submit(relative, {**env, "RAY_ADDRESS": url})
    assert proc.returncode != 0
    assert "run.output 'runs/sim-h100' is relative" in proc.stdout + proc.stderr

    no_token = {**clean_env(tmp_path), "RAY_AUTH_MODE": "token", "RAY_ADDRESS": gcs}
    cli = [sys.executable, "-m", "spex_ray.cli", "solve", "--config", "configs/sim_h100.yaml", "--limit", "1",
           "--output", str(tmp_path / "no_token")]  # fmt: skip
    proc = subprocess.run(
        cli, cwd=REPO, env={**no_token, "PYTHONPATH": str(REPO)}, capture_output=True, text=True
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith(f"spex-ray: error: the Ray cluster at {gcs} refused this client")
    assert "RAY_AUTH_TOKEN_PATH" in error and "~/.ray/auth_token" in error
