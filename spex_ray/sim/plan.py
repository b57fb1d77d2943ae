"""Plan a cluster: a configured batch on N simulated GPUs, in modeled time (`spex-ray simulate`).

The configured search (algorithm, SPEX settings, reward, run.concurrency queries in flight)
runs on the discrete-event simulation (cluster.py) over the synthetic `sim` problems. A
config written for real engines is simulated as is: the backend becomes the simulated GPU
(policy.sim.gpu, default h100) serving the same model (policy.model by name, e.g.
meta-llama/Meta-Llama-3-8B-Instruct -> llama-3-8b), and a real PRM (reward.kind prm)
becomes the modeled PRM of the same model (sim_prm, sim/prm.py). The figures are modeled:
questions per minute, query latency p50/p99 and GPU-seconds per query (every GPU the batch
holds, the PRM's included, times the makespan, over the queries).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

from spex_ray.config import Config, ConfigError
from spex_ray.sim.cluster import SimRun, simulate
from spex_ray.sim.prm import reward_gpus
from spex_ray.sim.settings import resolve_model_name
from spex_ray.sim.workload import sim_problems

REAL_PRM = "prm"  # the reward kind of a real PRM, simulated as:
MODELED_PRM = "sim_prm"


@dataclass(frozen=True)
class ClusterPlan:
    """The modeled figures of one batch on a simulated cluster."""

    engines: int  # policy engines
    gpus: int  # every GPU the batch holds: policy engines x policy.tp, plus the PRM's own
    queries: int
    concurrency: int
    makespan_s: float
    questions_per_minute: float
    latency_p50_s: float
    latency_p99_s: float
    gpu_seconds_per_query: float
    accuracy: float | None

    def lines(self) -> list[str]:
        """The plan as the command prints it."""
        accuracy = "ungraded" if self.accuracy is None else f"{self.accuracy:.0%}"
        return [
            f"{self.queries} queries, {self.concurrency} in flight, on {_count(self.engines, 'simulated engine')} "
            f"({_count(self.gpus, 'GPU')})",
            f"questions/min     {self.questions_per_minute:.1f}",
            f"latency p50 / p99 {self.latency_p50_s:.1f} s / {self.latency_p99_s:.1f} s",
            f"GPU-s per query   {self.gpu_seconds_per_query:.1f}",
            f"makespan          {self.makespan_s:.1f} s",
            f"accuracy          {accuracy} (of the synthetic workload)",
        ]


def simulation_config(config: Config) -> Config:
    """`config` on the simulated accelerator: the sim backend for the same model, a modeled
    PRM for a real one; a model the simulator has no spec for is a ConfigError."""
    try:
        resolve_model_name(config.policy.model)
    except KeyError as exc:
        raise ConfigError(f"policy.model: {exc.args[0]}") from exc
    policy = dataclasses.replace(config.policy, backend="sim")
    reward = config.reward
    if reward.kind == REAL_PRM:
        reward = dataclasses.replace(reward, kind=MODELED_PRM)
    return dataclasses.replace(config, policy=policy, reward=reward).validate()


def plan_cluster(config: Config, engines: int, queries: int) -> ClusterPlan:
    """Simulate `queries` sim problems on `engines` simulated policy engines."""
    if engines < 1 or queries < 1:
        raise ValueError("need at least one engine and one query")
    config = simulation_config(config)
    run = simulate(config, sim_problems(queries), engines)
    return summarize(run, config, engines)


def summarize(run: SimRun, config: Config, engines: int) -> ClusterPlan:
    """The plan figures of a finished simulated batch."""
    gpus = engines * config.policy.tp + reward_gpus(config)
    queries = len(run.solutions)
    latencies = sorted(run.latencies_s.values())
    return ClusterPlan(
        engines=engines,
        gpus=gpus,
        queries=queries,
        concurrency=config.run.concurrency,
        makespan_s=run.makespan_s,
        questions_per_minute=run.questions_per_minute,
        latency_p50_s=percentile(latencies, 50),
        latency_p99_s=percentile(latencies, 99),
        gpu_seconds_per_query=gpus * run.makespan_s / queries if queries else 0.0,
        accuracy=run.accuracy,
    )


def baseline_of(config: Config) -> Config:
    """The same batch without SPEX (no speculation, no early termination)."""
    spex = dataclasses.replace(config.spex, speculate=False, early_stop=False)
    return dataclasses.replace(config, spex=spex)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile of sorted `values`, linearly interpolated (0 when empty)."""
    if not values:
        return 0.0
    rank = (len(values) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return values[low] + (values[high] - values[low]) * (rank - low)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
