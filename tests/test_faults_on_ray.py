"""Fault injection on real runs through Ray (simulated engines, real actors and processes):
an engine process killed or frozen, a tree actor killed, the allocator killed, mid-batch.
Every row must come back, with the answers of an undisturbed run."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from spex_ray import api
from spex_ray.actors.fleet import EngineFleet
from spex_ray.config import Config
from spex_ray.sim.workload import sim_problems

pytestmark = pytest.mark.slow

BATCH = [
    "policy.backend=sim", "reward.kind=sim", "policy.sim.time_scale=0.02", "policy.max_batch_size=64",
    "search.width=4", "search.max_depth=6", "run.concurrency=4", "run.progress=off", "policy.num_engines=2",
]  # fmt: skip
PROBLEMS = sim_problems(8)


class SpyFleet(EngineFleet):
    """The real fleet, remembered so a test can reach its actors."""

    last: SpyFleet | None = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        SpyFleet.last = self


def _run(tmp_path: Path, name: str, extra: list[str], fault=None):
    """solve() in a thread; `fault(fleet)` runs once two rows are journaled."""
    out = tmp_path / name
    config = Config.load(None, [*BATCH, *extra, f"run.output={out}"])
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("run", api.solve(PROBLEMS, config)))
    thread.start()
    if fault is not None:
        journal = out / "results.jsonl"
        while thread.is_alive() and (not journal.exists() or len(journal.read_text().splitlines()) < 2):
            time.sleep(0.05)
        fault(SpyFleet.last)
    thread.join(timeout=300)
    assert not thread.is_alive(), "the run did not finish"
    return result["run"]


@pytest.fixture
def spy(monkeypatch):
    monkeypatch.setattr(api, "EngineFleet", SpyFleet)


@pytest.fixture(scope="module")
def reference(ray_session, tmp_path_factory):
    return {s.id: s.answer for s in _run(tmp_path_factory.mktemp("ref"), "ref", []).solutions}


def _pid(handle) -> int:
    import ray

    return ray.get(handle.describe.remote())["pid"]


def _serving(fleet):
    return list(fleet.serving().values())


def _assert_complete(run, reference):
    assert [s.status for s in run.solutions] == ["ok"] * len(PROBLEMS), [s.error for s in run.solutions]
    assert {s.id: s.answer for s in run.solutions} == reference


def test_an_engine_process_killed_mid_batch_loses_no_row(ray_session, spy, tmp_path, reference):
    def kill_engine(fleet):
        os.kill(_pid(_serving(fleet)[0].handle), signal.SIGKILL)

    run = _run(tmp_path, "kill", [], kill_engine)
    _assert_complete(run, reference)
    assert sum(s.retries for s in run.solutions) >= 1  # requests in flight moved


def test_a_frozen_engine_is_restarted_and_loses_no_row(ray_session, spy, tmp_path, reference):
    def freeze_engine(fleet):
        os.kill(_pid(_serving(fleet)[0].handle), signal.SIGSTOP)

    run = _run(tmp_path, "freeze", ["policy.freeze_timeout_s=3"], freeze_engine)
    _assert_complete(run, reference)
    assert SpyFleet.last.restarted >= 1


def test_a_tree_actor_killed_mid_batch_has_its_queries_solved_again(ray_session, spy, tmp_path, reference):
    import ray

    def kill_tree(fleet):
        ray.kill(fleet.trees[0], no_restart=False)

    run = _run(tmp_path, "tree", [], kill_tree)
    _assert_complete(run, reference)
    assert any(s.attempts >= 2 for s in run.solutions)


def test_a_killed_allocator_is_restarted_and_speculation_goes_on(ray_session, spy, tmp_path, reference):
    import ray

    def kill_allocator(fleet):
        ray.kill(fleet.allocator, no_restart=False)

    spex = ["spex.speculate=true", "spex.allocator=utility", "spex.lookahead=2"]
    run = _run(tmp_path, "allocator", spex, kill_allocator)
    _assert_complete(run, reference)
    assert run.allocator_stats  # the restarted allocator answered at the end
