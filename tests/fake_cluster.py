"""A Ray cluster that autoscales on one machine: Ray's fake multi-node provider
(clusters/local-fake.yaml) behind a head started with token authentication on, on ports
of its own, so it runs beside the suite's session Ray (tests/conftest.py).

    with start_fake_cluster(tmp_path) as cluster:
        subprocess.run([sys.executable, "driver.py"], env=cluster.client_env(), check=True)

Its "nodes" are raylets the autoscaler starts on this machine when resources are
requested (`ray.autoscaler.sdk.request_resources`, or tasks and actors that do not fit),
each with the fake GPUs its node type declares, and kills when they are idle for the
config's idle timeout. `kill_node` removes one abruptly, as a lost machine: every process
of that node dies at once, and the GCS marks it dead after its health checks fail.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from ray.autoscaler._private.fake_multi_node.node_provider import FAKE_HEAD_NODE_ID

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "clusters" / "local-fake.yaml"
BIN = Path(sys.executable).parent
HEAD_CPUS = 1  # must match the head node type's resources in the config
# A lost node is declared dead after HEALTH_CHECK_FAILURES failed checks HEALTH_CHECK_PERIOD_MS
# apart (Ray's defaults, 5 x 3 s, would make every node-loss test wait 15 s).
HEALTH_CHECK_PERIOD_MS = 500
HEALTH_CHECK_FAILURES = 2
# Ray's own environment settings that would point a process at another cluster or token.
RAY_CLIENT_ENV = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
HEAD_PORTS = (
    "port",
    "node-manager-port",
    "object-manager-port",
    "dashboard-port",
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "metrics-export-port",
    "runtime-env-agent-port",
    "ray-client-server-port",
)


@dataclass(frozen=True)
class FakeCluster:
    """A running fake cluster: its GCS address and the token a client needs."""

    address: str
    token_path: Path
    temp_dir: Path
    head: subprocess.Popen

    def client_env(self, **extra: str) -> dict[str, str]:
        """This process's environment set up to join the cluster (`ray.init()` with no
        address): RAY_ADDRESS, RAY_AUTH_MODE=token and the token's path."""
        env = {k: v for k, v in os.environ.items() if k not in RAY_CLIENT_ENV}
        auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_path)}
        path = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        return {**env, **auth, "RAY_ADDRESS": self.address, "PATH": path, **extra}

    def kill_node(self, node_id: str) -> list[int]:
        """Remove one of this cluster's nodes without notice (`kill_node`)."""
        return kill_node(node_id, self.temp_dir)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(path: Path, gcs_address: str) -> Path:
    """clusters/local-fake.yaml with the head's GCS address, where launched nodes join
    (the fake provider assumes port 6379 otherwise)."""
    config = yaml.safe_load(CONFIG.read_text())
    config["provider"]["gcs_address"] = gcs_address
    path.write_text(yaml.safe_dump(config))
    return path


def head_command(config: Path, ports: dict[str, int], temp_dir: Path) -> list[str]:
    system_config = (
        f'{{"health_check_period_ms":{HEALTH_CHECK_PERIOD_MS},'
        f'"health_check_failure_threshold":{HEALTH_CHECK_FAILURES}}}'
    )
    return [
        str(BIN / "ray"), "start", "--head", "--block", f"--autoscaling-config={config}",
        *(f"--{name}={port}" for name, port in ports.items()),
        f"--num-cpus={HEAD_CPUS}", "--num-gpus=0", "--node-ip-address=127.0.0.1",
        "--dashboard-host=127.0.0.1", f"--temp-dir={temp_dir}", "--disable-usage-stats",
        f"--system-config={system_config}",
    ]  # fmt: skip


def head_env(token_path: Path) -> dict[str, str]:
    """The head's environment; the autoscaler and the nodes it launches inherit it."""
    env = {k: v for k, v in os.environ.items() if k not in RAY_CLIENT_ENV}
    return {
        **env,
        "RAY_FAKE_CLUSTER": "1",
        "AUTOSCALER_UPDATE_INTERVAL_S": "1",  # Ray's default: 5 s
        # The autoscaler v2: it replaces a lost node (v1 never terminates a fake node that
        # died, since the fake provider cannot mark its nodes set up) and does not count a
        # pending actor on top of request_resources (v1 launched one node too many).
        "RAY_enable_autoscaler_v2": "1",
        "RAY_CLOUD_INSTANCE_ID": FAKE_HEAD_NODE_ID,  # v2 finds the head's instance by it
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token_path),
    }


def wait_until_up(cluster: FakeCluster, log: Path, timeout: float = 90) -> None:
    """Until `ray status` answers (GCS and autoscaler up), or raise with the head's log."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cluster.head.poll() is not None:
            raise RuntimeError(f"ray start exited with {cluster.head.returncode}:\n{log.read_text()[-3000:]}")
        status = subprocess.run(
            [str(BIN / "ray"), "status", f"--address={cluster.address}"],
            env=cluster.client_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        if status.returncode == 0 and "Autoscaler" in status.stdout + status.stderr:
            return
        time.sleep(1)
    raise TimeoutError(f"the fake cluster at {cluster.address} did not come up:\n{log.read_text()[-3000:]}")


def stop(head: subprocess.Popen, grace: float = 2) -> None:
    """End the head's process group (GCS, autoscaler, the fake nodes it launched). The GCS
    and `ray start --block` linger for ~20 s on SIGTERM; nothing of theirs outlives the
    test, so they get SIGKILL after `grace` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        head.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGKILL)  # what ignored SIGTERM or outlived `ray start`
    head.wait(timeout=60)


@contextlib.contextmanager
def start_fake_cluster(work_dir: Path) -> Iterator[FakeCluster]:
    """A fake autoscaling cluster for the duration of the block; its token, config copy and
    log in `work_dir` (clusters/local-fake.yaml: the head has one CPU and no GPU, GPU nodes
    start at 0)."""
    token_path = work_dir / "auth_token"
    token_path.write_text(secrets.token_hex(32))
    ports = {name: free_port() for name in HEAD_PORTS}
    address = f"127.0.0.1:{ports['port']}"
    config = write_config(work_dir / "local-fake.yaml", address)
    # Short: Ray's unix socket paths live under it and are limited to ~100 characters.
    temp_dir = Path("/tmp") / f"spex_fake_{os.getpid()}_{ports['port']}"
    log_path = work_dir / "ray_head.log"
    with open(log_path, "w") as log:
        head = subprocess.Popen(
            head_command(config, ports, temp_dir),
            env=head_env(token_path),
            start_new_session=True,  # one process group to end, apart from the test's
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        cluster = FakeCluster(address=address, token_path=token_path, temp_dir=temp_dir, head=head)
        try:
            wait_until_up(cluster, log_path)
            yield cluster
        finally:
            stop(head)
            keep_autoscaler_log(temp_dir, work_dir)
            shutil.rmtree(temp_dir, ignore_errors=True)


def keep_autoscaler_log(temp_dir: Path, work_dir: Path) -> None:
    """Copy the autoscaler's log (what it launched and terminated, and why) into `work_dir`."""
    for log in (temp_dir / "session_latest" / "logs").glob("monitor.*"):
        shutil.copy(log, work_dir / f"autoscaler_{log.name}")


def _process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process on this machine."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # it ended while we looked
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        table[int(entry.name)] = (parent, cmdline)
    return table


def node_processes(node_id: str, temp_dir: Path) -> list[int]:
    """The processes of one node of the cluster in `temp_dir`: its raylet, its agents, and
    their children (the node's workers, whose command lines Ray renames). Fake node ids
    repeat from cluster to cluster, so a process must name both."""
    table = _process_table()
    marks = (f"--node_id={node_id}", f"--node-id={node_id}")
    found = {
        pid for pid, (_, cmd) in table.items() if str(temp_dir) in cmd and any(mark in cmd for mark in marks)
    }
    grew = True
    while grew:
        children = {pid for pid, (parent, _) in table.items() if parent in found} - found
        found |= children
        grew = bool(children)
    return sorted(found)


def kill_node(node_id: str, temp_dir: Path) -> list[int]:
    """Remove a node of the cluster in `temp_dir` at once, as a machine lost without
    notice: SIGKILL to every one of its processes. Returns the pids killed (empty: no
    such node)."""
    pids = node_processes(node_id, temp_dir)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids
