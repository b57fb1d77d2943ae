"""A driver run against a fake autoscaling cluster (tests/fake_cluster.py) by
tests/test_fake_cluster.py and benchmarks/fake_autoscaler.py: it asks the autoscaler for
GPU nodes, places a one-GPU actor, loses that actor's node without notice, and hands
every node back, writing one JSON line per event, with the seconds since the step began,
to EVENTS_FILE (not stdout, where Ray prints its own notices).

    python tests/autoscale_driver.py NODES CLUSTER_TEMP_DIR EVENTS_FILE
    (RAY_ADDRESS and token auth set: FakeCluster.client_env())
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import ray
from ray.autoscaler.sdk import request_resources

sys.path.insert(0, str(Path(__file__).parent))
from fake_cluster import FakeCluster, kill_node  # noqa: E402

POLL_S = 0.2


def report(event: str, **fields) -> None:
    with open(sys.argv[3], "a") as events:
        events.write(json.dumps({"event": event, **fields}) + "\n")


def run_against(cluster: FakeCluster, nodes: int, events: Path, timeout: float = 300) -> dict[str, dict]:
    """Run this driver as a client of `cluster` (a subprocess); its events
    by name. Raises with the driver's output if it fails."""
    proc = subprocess.run(
        [sys.executable, __file__, str(nodes), str(cluster.temp_dir), str(events)],
        env=cluster.client_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"the driver failed ({proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        )
    lines = events.read_text().splitlines()
    return {event.pop("event"): event for event in map(json.loads, lines)}


def gpu_nodes() -> set[str]:
    """The ids of the alive nodes that have a GPU."""
    return {n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("GPU")}


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(POLL_S)


@ray.remote(num_gpus=1, num_cpus=1, max_restarts=0)
class GpuWorker:
    def node(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def visible_gpus(self) -> list[str]:
        return [str(i) for i in ray.get_gpu_ids()]

    def sleep(self, seconds: float) -> str:
        time.sleep(seconds)
        return "done"


def scale_up(nodes: int) -> GpuWorker:
    """From no GPU node: ask for `nodes` one-GPU bundles and place an actor at once."""
    assert not gpu_nodes(), f"GPU nodes before any request: {gpu_nodes()}"
    start = time.monotonic()
    request_resources(bundles=[{"GPU": 1, "CPU": 1}] * nodes)
    worker = GpuWorker.remote()  # pending until a node joins
    ready = worker.node.remote()
    wait_for(lambda: gpu_nodes(), 60, "the first GPU node")
    report("first_node_alive", seconds=time.monotonic() - start)
    node = ray.get(ready, timeout=60)
    report(
        "actor_running",
        seconds=time.monotonic() - start,
        node=node,
        gpus=ray.get(worker.visible_gpus.remote()),
    )
    wait_for(lambda: len(gpu_nodes()) >= nodes, 60, f"{nodes} GPU nodes")
    report("all_nodes_alive", seconds=time.monotonic() - start, nodes=sorted(gpu_nodes()))
    return worker


def lose_node(worker: GpuWorker, nodes: int) -> None:
    """Kill the node under a busy actor: its call fails, the node is marked dead, and the
    autoscaler brings the cluster back to `nodes` GPU nodes (the request still stands)."""
    node = ray.get(worker.node.remote())
    call = worker.sleep.remote(60)
    time.sleep(0.5)  # the call is running
    start = time.monotonic()
    pids = kill_node(node, Path(sys.argv[2]))
    assert pids, f"no process of node {node} found"
    try:
        ray.get(call, timeout=60)
        raise AssertionError("the call on the killed node returned")
    except ray.exceptions.RayActorError as error:
        report("call_failed", seconds=time.monotonic() - start, error=type(error).__name__)
    wait_for(lambda: node not in gpu_nodes(), 60, f"node {node} marked dead")
    report("node_dead", seconds=time.monotonic() - start, node=node, pids=len(pids))
    wait_for(lambda: len(gpu_nodes()) >= nodes, 60, f"{nodes} GPU nodes again")
    report("node_replaced", seconds=time.monotonic() - start, nodes=sorted(gpu_nodes()))


def scale_down() -> None:
    """Withdraw the request: the idle nodes go after the idle timeout."""
    start = time.monotonic()
    request_resources(bundles=[])
    wait_for(lambda: not gpu_nodes(), 60, "no GPU node")
    report("no_gpu_node", seconds=time.monotonic() - start)


def main() -> None:
    nodes = int(sys.argv[1])
    ray.init(log_to_driver=False)
    worker = scale_up(nodes)
    lose_node(worker, nodes)
    scale_down()


if __name__ == "__main__":
    main()
