"""The modeled PRM (reward.kind sim_prm), shared simulated GPUs, and `spex-ray simulate`."""

from __future__ import annotations

import asyncio

import pytest

from spex_ray.cli import main
from spex_ray.config import Config, PolicyConfig, RewardConfig
from spex_ray.engines.base import GenRequest, GenResult, Priority
from spex_ray.rewards.base import StepContext
from spex_ray.sim.cluster import simulate
from spex_ray.sim.device import SharedDevice
from spex_ray.sim.engine import SimEngine
from spex_ray.sim.loop import run_virtual
from spex_ray.sim.plan import percentile, plan_cluster, simulation_config
from spex_ray.sim.prm import SimPRMReward, build_sim_reward, prm_input, reward_gpus
from spex_ray.sim.reward import SimReward
from spex_ray.sim.settings import SimSettings
from spex_ray.sim.workload import WorkloadParams, sim_problems

SIM = ["policy.backend=sim", "policy.max_new_tokens=256", "run.progress=off", "run.concurrency=4"]
SHARED = ["reward.num_gpus=0.5", "policy.mem_fraction_static=0.55", "reward.mem_fraction_static=0.35"]


def _config(*overrides: str) -> Config:
    return Config.load(
        None, [*SIM, "search.algorithm=rebase", "search.width=4", "search.max_depth=6", *overrides]
    )


def test_a_modeled_prm_scores_as_the_sim_reward_and_costs_time():
    problems = sim_problems(4)
    free = simulate(_config("reward.kind=sim"), problems)
    paid = simulate(_config("reward.kind=sim_prm"), problems)
    assert [s.answer for s in paid.solutions] == [s.answer for s in free.solutions]
    assert [s.step_rewards for s in paid.solutions] == [s.step_rewards for s in free.solutions]
    assert [s.nodes for s in paid.solutions] == [s.nodes for s in free.solutions]  # the same trees
    assert paid.makespan_s > free.makespan_s  # every step waits for its PRM pass
    shared = simulate(_config("reward.kind=sim_prm", *SHARED), problems)
    assert shared.makespan_s > paid.makespan_s  # the PRM's passes now take the policy's GPU too


def test_speculative_steps_are_scored_after_primary_ones_on_the_query_engine():
    config = _config("reward.kind=sim_prm", "reward.num_engines=2")
    reward = build_sim_reward(config)
    assert isinstance(reward, SimPRMReward) and len(reward.engines) == 2 and reward.gpus() == 2
    seen: list[tuple[str, GenRequest]] = []
    for engine in reward.engines:
        engine.generate = _recording(engine.name, seen)

    def context(problem: str, priority: Priority) -> StepContext:
        result = GenResult(request_id="r", text="Step 1 [z=0.700]: so", meta={"priority": float(priority)})
        return StepContext(problem, "prompt", ["Step 1 [z=0.700]: so"], result)

    async def score_all():
        return [
            await reward.score(context("p1", Priority.MAIN)),
            await reward.score(context("p1", Priority.SPEC)),
            await reward.score(context("p2", Priority.MAIN)),
        ]

    scores = asyncio.run(score_all())
    assert scores[0] == scores[1] == SimReward().score_step("Step 1 [z=0.700]: so")
    assert [r.priority for _, r in seen] == [Priority.MAIN, Priority.SPEC, Priority.MAIN]
    assert seen[0][0] == seen[1][0] != seen[2][0]  # a query sticks to one PRM engine
    assert seen[0][1].prompt == prm_input("p1", ["Step 1 [z=0.700]: so"]) and seen[0][1].max_new_tokens == 1


def _recording(name: str, seen: list):
    async def generate(request: GenRequest) -> GenResult:
        seen.append((name, request))
        return GenResult(request_id=request.request_id, prompt_tokens=10)

    return generate


def test_engines_on_one_shared_device_take_turns():
    steps = WorkloadParams(step_tokens_mean=200, step_tokens_sigma=0.0, answer_scale=1e6)
    policy = PolicyConfig(backend="sim", model="llama-3-8b", max_new_tokens=256)

    def request() -> GenRequest:
        return GenRequest(
            prompt="<|user|>\nSim problem: x\n<|assistant|>\n", max_new_tokens=200, stop=("\n\n",)
        )

    async def run(devices):
        engines = [SimEngine(policy, workload=steps, device=d) for d in devices]
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.gather(*(e.generate(request()) for e in engines))
        elapsed = loop.time() - start
        busy = sum(e.busy_s for e in engines)
        for engine in engines:
            await engine.close()
        return elapsed, busy

    alone, busy = run_virtual(run([None, None]))
    device = SharedDevice()
    shared, shared_busy = run_virtual(run([device, device]))
    assert alone == pytest.approx(busy / 2)  # two GPUs: side by side
    assert shared == pytest.approx(shared_busy, rel=1e-6)  # one GPU: one iteration at a time
    assert shared == pytest.approx(2 * alone, rel=0.01)


def test_a_prm_on_the_policy_gpu_needs_the_memory_split_and_a_known_model():
    config = _config("reward.kind=sim_prm", "reward.num_gpus=0.5")
    with pytest.raises(ValueError, match="split its memory"):
        build_sim_reward(config, [SharedDevice()])
    with pytest.raises(ValueError, match="reward.model"):
        build_sim_reward(_config("reward.kind=sim_prm", "reward.model=no-such-prm"))
    with pytest.raises(ValueError, match="policy.backend sim"):
        SimPRMReward(RewardConfig(kind="sim_prm"), PolicyConfig(backend="hf"))
    assert reward_gpus(_config("reward.kind=sim_prm", *SHARED)) == 0
    assert reward_gpus(_config("reward.kind=sim_prm", "reward.tp=2")) == 2
    assert reward_gpus(_config("reward.kind=confidence")) == 0


def test_an_inline_workload_sets_the_sim_parameters():
    config = _config("policy.sim.workload={step_tokens_sigma: 0.3, answer_scale: 4}")
    engine = SimEngine(config.policy)
    assert (engine.workload.step_tokens_sigma, engine.workload.answer_scale) == (0.3, 4)
    with pytest.raises(ValueError, match="policy.sim.workload: unknown workload parameters"):
        _config("policy.sim.workload={step_sigma: 0.3}")


def test_batch_one_decode_matches_the_published_latencies():
    def step_ms(gpu: str, model: str) -> float:
        policy = PolicyConfig(backend="sim", model=model)
        return 1000 * SimSettings(gpu=gpu).timing(policy).decode_step_time(1, 512)

    assert 6.0 <= step_ms("h100", "llama-3-8b") <= 8.0
    assert 19.0 <= step_ms("a6000", "llemma-7b") <= 23.0


def test_planning_a_cluster_gives_throughput_latency_and_gpu_seconds():
    config = Config.load(
        None, ["policy.backend=hf", "policy.model=meta-llama/Meta-Llama-3-8B-Instruct", "reward.kind=prm",
               "reward.model=Qwen/Qwen2.5-Math-PRM-7B", "search.width=4", "search.max_depth=6",
               "run.concurrency=4", "run.progress=off"],
    )  # fmt: skip
    simulated = simulation_config(config)
    assert (simulated.policy.backend, simulated.reward.kind) == ("sim", "sim_prm")
    plan = plan_cluster(config, engines=2, queries=6)
    assert plan.queries == 6 and plan.gpus == 3  # two policy engines and the PRM's GPU
    assert 0 < plan.latency_p50_s <= plan.latency_p99_s <= plan.makespan_s
    assert plan.gpu_seconds_per_query == pytest.approx(3 * plan.makespan_s / 6)
    assert plan.questions_per_minute == pytest.approx(60 * 6 / plan.makespan_s)
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5 and percentile([], 99) == 0.0
    with pytest.raises(ValueError, match="policy.model"):
        simulation_config(Config.load(None, ["policy.model=no-such-model"]))


def test_simulate_command_prints_the_plan(capsys):
    code = main(
        ["simulate", "--gpus", "2", "--limit", "4", "--vs-baseline", "--set", "policy.backend=sim",
         "--set", "search.width=4", "--set", "search.max_depth=6", "--set", "spex.speculate=true"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "4 queries, 4 in flight, on 2 simulated engines (2 GPUs)" in out
    for label in ("questions/min", "latency p50 / p99", "GPU-s per query", "without SPEX:"):
        assert label in out
    assert main(["simulate", "--set", "policy.model=no-such-model"]) == 2
    assert "policy.model" in capsys.readouterr().err
