"""How fast Ray's autoscaler adds, replaces and removes GPU nodes on the fake multi-node
cluster (clusters/local-fake.yaml, autoscaler v2, 1 s update interval, 3 s idle timeout):
the floor under the elastic engine pool's scale-up and scale-down latencies. Each run is
tests/autoscale_driver.py from no GPU node: request_resources for N one-GPU bundles with
a one-GPU actor placed at once, the actor's node killed, the request withdrawn.

    python benchmarks/fake_autoscaler.py --runs 3 --nodes 3

Seconds from each step's start (the request, the kill, the withdrawal), min / median / max.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from autoscale_driver import run_against  # noqa: E402
from fake_cluster import start_fake_cluster  # noqa: E402

EVENTS = {
    "first_node_alive": "request -> first GPU node alive",
    "actor_running": "request -> one-GPU actor running",
    "all_nodes_alive": "request -> all GPU nodes alive",
    "call_failed": "node killed -> its actor's call fails",
    "node_dead": "node killed -> node marked dead",
    "node_replaced": "node killed -> replacement alive",
    "no_gpu_node": "request withdrawn -> no GPU node",
}


def one_run(cluster, nodes: int, events: Path) -> dict[str, float]:
    return {name: event["seconds"] for name, event in run_against(cluster, nodes, events).items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=3, help="GPU nodes requested (at most 4)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work, start_fake_cluster(Path(work)) as cluster:
        # each from no GPU node: the previous run ended with none
        runs = [one_run(cluster, args.nodes, Path(work) / f"events_{i}.jsonl") for i in range(args.runs)]
    print(f"| step ({args.nodes} nodes, {args.runs} runs) | min s | median s | max s |\n|---|---|---|---|")
    for event, label in EVENTS.items():
        values = [run[event] for run in runs]
        print(f"| {label} | {min(values):.1f} | {statistics.median(values):.1f} | {max(values):.1f} |")


if __name__ == "__main__":
    main()
