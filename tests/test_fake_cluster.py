"""The fake autoscaling cluster (tests/fake_cluster.py, clusters/local-fake.yaml) does what
the elastic engine pool relies on: GPU nodes appear on request_resources, a one-GPU actor
lands on one, a node lost without notice fails its calls and is replaced while the request
stands, and the nodes go once the request is withdrawn and the idle timeout passes. A
client without the cluster's token is refused."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from autoscale_driver import run_against
from elastic_driver import ELASTIC
from fake_cluster import BIN, start_fake_cluster

from spex_ray.config import Config

pytestmark = pytest.mark.slow

NODES = 3


@pytest.fixture(scope="module")
def fake_cluster(tmp_path_factory):
    """One fake cluster for this module's tests (starting one takes ~5-10 s here)."""
    with start_fake_cluster(tmp_path_factory.mktemp("fake_cluster")) as cluster:
        yield cluster


def test_gpu_nodes_come_on_request_are_replaced_when_lost_and_go_when_idle(fake_cluster, tmp_path):
    events = run_against(fake_cluster, NODES, tmp_path / "events.jsonl")
    print(json.dumps(events, indent=1))  # the latencies, with -s

    up, actor = events["all_nodes_alive"], events["actor_running"]
    assert len(up["nodes"]) == NODES
    assert actor["node"] in up["nodes"] and actor["gpus"] == ["0"]
    assert events["call_failed"]["error"] == "ActorDiedError"
    lost = events["node_dead"]["node"]
    assert lost == actor["node"] and events["node_dead"]["pids"] >= 1
    replaced = events["node_replaced"]["nodes"]
    assert len(replaced) == NODES and lost not in replaced and set(replaced) - set(up["nodes"])
    assert "no_gpu_node" in events


def test_a_client_without_the_token_is_refused(fake_cluster, tmp_path):
    wrong = tmp_path / "wrong_token"
    wrong.write_text("0" * 64)
    status = [str(BIN / "ray"), "status", f"--address={fake_cluster.address}"]
    env = fake_cluster.client_env(RAY_AUTH_TOKEN_PATH=str(wrong))
    proc = subprocess.run(status, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "auth" in (proc.stdout + proc.stderr).lower()


def test_an_elastic_pool_scales_up_loses_a_node_without_losing_a_row_and_scales_back(fake_cluster, tmp_path):
    import sys

    from spex_ray.sim.cluster import simulate
    from spex_ray.sim.workload import sim_problems

    driver = Path(__file__).parent / "elastic_driver.py"
    result_file = tmp_path / "elastic.json"
    command = [
        sys.executable,
        str(driver),
        str(fake_cluster.temp_dir),
        str(tmp_path / "run"),
        str(result_file),
    ]
    proc = subprocess.run(command, env=fake_cluster.client_env(), capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(result_file.read_text())
    print(json.dumps(result["events"], indent=1))  # the latencies, with -s

    rows = result["rows"]
    assert [row["status"] for row in rows] == ["ok"] * 12, [row["error"] for row in rows]
    reference = simulate(Config.load(None, ELASTIC), sim_problems(12))  # the same searches, in-process
    assert [row["answer"] for row in rows] == [s.answer for s in reference.solutions]
    assert max(count for _, count in result["counts"]) >= 2  # grew from no GPU node to several
    assert result["killed"] is not None and len({row["engine"] for row in rows}) >= 2
    assert "no_gpu_node" in result["events"]  # and handed every GPU node back
