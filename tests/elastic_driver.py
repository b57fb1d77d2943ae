"""A batch on an elastic engine pool, run against a fake autoscaling cluster
(tests/fake_cluster.py) by tests/test_fake_cluster.py and benchmarks/fake_autoscaler.py.

From no GPU node, solve() on simulated one-GPU engines with policy.max_engines; once two
rows are finished, one GPU node is removed without notice; after the batch, the cluster
must hand its GPU nodes back. Writes one JSON object to RESULT_FILE: the rows, the GPU
node counts over time and the seconds of each event since solve() began.

    python tests/elastic_driver.py CLUSTER_TEMP_DIR OUTPUT_DIR RESULT_FILE [key=value ...]
    (RAY_ADDRESS and token auth set: FakeCluster.client_env())
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import ray

sys.path.insert(0, str(Path(__file__).parent))
from autoscale_driver import gpu_nodes, wait_for  # noqa: E402
from fake_cluster import kill_node  # noqa: E402

from spex_ray import solve  # noqa: E402
from spex_ray.sim.workload import sim_problems  # noqa: E402

ELASTIC = [
    "policy.backend=sim", "reward.kind=sim", "policy.sim.time_scale=0.05", "policy.num_gpus=1",
    "policy.max_batch_size=8", "search.width=4", "search.max_depth=6", "policy.max_engines=3",
    "policy.idle_timeout_s=2", "run.concurrency=6", "run.progress=log",
]  # fmt: skip


def main() -> None:
    temp_dir, output, result_file = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    overrides = [*ELASTIC, f"run.output={output}", *sys.argv[4:]]
    ray.init(log_to_driver=False)
    events: dict[str, float] = {}
    counts: list[tuple[float, int]] = []
    start = time.monotonic()
    run: dict = {}
    batch = threading.Thread(
        target=lambda: run.setdefault("result", solve(sim_problems(12), None, overrides))
    )
    batch.start()
    killed = None
    journal = Path(output) / "results.jsonl"
    while batch.is_alive():
        nodes = gpu_nodes()
        counts.append((time.monotonic() - start, len(nodes)))
        if nodes and "first_gpu_node" not in events:
            events["first_gpu_node"] = time.monotonic() - start
        rows = len(journal.read_text().splitlines()) if journal.exists() else 0
        if killed is None and rows >= 2 and len(nodes) >= 2:
            killed = sorted(nodes)[0]
            kill_node(killed, temp_dir)
            events["node_killed"] = time.monotonic() - start
        time.sleep(0.2)
    events["batch_done"] = time.monotonic() - start
    wait_for(lambda: not gpu_nodes(), 90, "no GPU node after the batch")
    events["no_gpu_node"] = time.monotonic() - start
    result = run["result"]
    result_file.write_text(
        json.dumps(
            {
                "events": events,
                "counts": counts,
                "killed": killed,
                "rows": [{"id": s.id, "status": s.status, "answer": s.answer, "engine": s.engine,
                          "retries": s.retries, "error": s.error} for s in result.solutions],
            }
        )
    )  # fmt: skip


if __name__ == "__main__":
    main()
