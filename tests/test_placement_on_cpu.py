"""Where engine actors go: GPUs per actor and STRICT_PACK bundles for tensor parallel (no Ray started)."""

from __future__ import annotations

from spex_ray.actors.pool import (
    ActorResources,
    actor_options,
    engine_resources,
    policy_resources,
    reward_resources,
)
from spex_ray.config import PolicyConfig, RewardConfig
from spex_ray.engines.hf_settings import HFSettings


def test_cpu_engines_keep_what_they_ask_for():
    assert policy_resources(PolicyConfig()) == ActorResources(0.0, 1.0)
    assert policy_resources(PolicyConfig(num_cpus=2.0, tp=4)) == ActorResources(
        0.0, 2.0
    )  # tp only matters on GPUs
    options, group = actor_options(policy_resources(PolicyConfig()))
    assert options == {"num_gpus": 0.0, "num_cpus": 1.0} and group is None


def test_gpu_engines_get_their_gpus():
    assert policy_resources(PolicyConfig(backend="sglang")) == ActorResources(1.0, 1.0)  # 0 = tp GPUs
    on_cuda = PolicyConfig().with_settings("hf", HFSettings(device="cuda"))
    assert policy_resources(on_cuda) == ActorResources(1.0, 1.0)  # transformers on CUDA
    assert policy_resources(PolicyConfig(backend="sim", tp=2)) == ActorResources(0.0, 1.0)  # a modeled GPU
    shared = policy_resources(PolicyConfig(backend="sglang", num_gpus=0.5))
    assert shared == ActorResources(0.5, 1.0)  # a GPU shared with the reward: no placement group
    options, group = actor_options(shared)
    assert options == {"num_gpus": 0.5, "num_cpus": 1.0} and group is None


def test_tensor_parallel_engines_reserve_one_strict_pack_bundle():
    tp4 = policy_resources(PolicyConfig(backend="sglang", tp=4))
    assert tp4.num_gpus == 4.0 and tp4.strategy == "STRICT_PACK"
    assert tp4.bundles == ({"GPU": 4.0, "CPU": 5.0},)  # the actor's CPU plus one per TP rank
    assert engine_resources(2, 1.0, 2, needs_gpus=True).bundles == ({"GPU": 2.0, "CPU": 3.0},)
    prm = reward_resources(RewardConfig(kind="prm", model="m", tp=2, num_gpus=2))
    assert prm.bundles == ({"GPU": 2.0, "CPU": 3.0},)
    assert reward_resources(RewardConfig(kind="prm", model="m")) == ActorResources(1.0, 1.0)
    cpu_prm = reward_resources(
        RewardConfig(kind="prm", scorer="qwen_prm", model="m", device="cpu", num_gpus=0)
    )
    assert cpu_prm == ActorResources(0.0, 1.0)


def test_engine_actor_passes_its_name_to_engines_that_take_one():
    from spex_ray.engines import build_engine
    from spex_ray.sim.engine import SimEngine

    engine = build_engine(PolicyConfig(backend="sim"), "engine-3")
    assert isinstance(engine, SimEngine)
