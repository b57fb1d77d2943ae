"""SimPRMReward: the sim reward, paid for with a process reward model's forward pass.

SimReward scores a step for free. A real PRM is a model of its own: every step it scores
is a forward pass of the path (problem + steps so far) through, e.g., a 7B model, and SPEX
scores every speculative step too. SimPRMReward charges that cost: each score first runs
the path as a prefill-only request (one output position, where the PRM's score is read) on
a simulated PRM engine, a SimEngine serving the PRM model, so the roofline timing,
continuous batching of the paths waiting to be scored and the prefix cache (a path whose
parent was scored pays for its new step only, as on SGLang's radix cache) are the policy
engine's. Then it returns SimReward's score of the step. A speculative step is scored at
SPEC priority (the policy engine reports each request's priority in GenResult.meta), so
primary scoring goes first in the PRM's queue, as primary decoding does in the policy's.

Where the PRM runs (the reward section):

    reward.model          the PRM: a hardware.specs model name or hub id; "" = Math-Shepherd's
                          Mistral-7B PRM
    reward.num_gpus       >= 1: reward.num_engines PRM engines on GPUs of their own (the
                          policy's GPU type, reward.tp GPUs each); < 1: one PRM engine on each
                          policy engine's GPU, time-sharing it (sim/device.py)
    reward.max_batch_size paths in one PRM iteration
    reward.mem_fraction_static  the PRM engine's share of its GPU's memory (0 = 0.9 on a GPU
                          of its own; on a shared GPU, 0 = 0.9 less policy.mem_fraction_static,
                          which must then be set)

The timing knobs (efficiency, overhead, prefill chunk, time_scale) are the policy's
(policy.sim). The confidence and sim rewards stay free. This reward needs the simulated
policy: the discrete-event simulation (sim/cluster.py, `spex-ray simulate`) builds it with
build_sim_reward().
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from spex_ray.config import Config, PolicyConfig, RewardConfig
from spex_ray.engines.base import FinishReason, GenRequest, GenResult, Priority
from spex_ray.hardware.roofline import MEM_FRACTION
from spex_ray.registries import REWARDS
from spex_ray.rewards.base import StepContext
from spex_ray.sim.device import SharedDevice
from spex_ray.sim.engine import SimEngine
from spex_ray.sim.reward import SimReward
from spex_ray.sim.settings import SimSettings, resolve_model_name

DEFAULT_PRM = "math-shepherd-mistral-7b-prm"


class SimPRMReward(SimReward):
    """SimReward's score, after a modeled forward pass of the path through a PRM.

    `policy` is the simulated policy (its GPU type and timing knobs); `devices` the policy
    engines' shared devices, one per policy engine, when the PRM shares their GPUs.
    """

    def __init__(
        self,
        config: RewardConfig | None = None,
        policy: PolicyConfig | None = None,
        devices: Sequence[SharedDevice | None] = (),
    ) -> None:
        super().__init__(config)
        self.config = config or RewardConfig(kind="sim_prm")
        if policy is None or policy.backend != "sim":
            raise ValueError(
                "reward.kind sim_prm models a PRM on simulated GPUs: it needs policy.backend sim "
                "and the simulation (spex_ray.sim.simulate, spex-ray simulate)"
            )
        self.policy = prm_policy(self.config, policy)
        self.colocated = colocated(self.config)
        if self.colocated and not any(devices):
            raise ValueError("reward.num_gpus < 1 puts the PRM on the policy's GPUs: pass their devices")
        shared = list(devices) if self.colocated else [None] * self.config.num_engines
        self.engines = [
            SimEngine(self.policy, name=f"prm-{i}", device=device) for i, device in enumerate(shared)
        ]
        self._engine_of: dict[str, int] = {}  # problem -> its PRM engine (dedicated GPUs)
        self.calls = 0
        self.prompt_tokens = 0
        self.cached_tokens = 0

    async def score(self, context: StepContext) -> float:
        await self.forward(context)
        return await super().score(context)

    async def forward(self, context: StepContext) -> GenResult:
        """The PRM's pass over the path of `context`, on the engine that serves its query."""
        steps = list(context.steps) or [context.result.text]
        request = GenRequest(
            prompt=prm_input(context.problem, steps),
            max_new_tokens=1,
            temperature=0.0,
            seed=0,
            priority=Priority(int(context.result.meta.get("priority", Priority.MAIN))),
            logprobs=False,
            tags={"kind": "prm"},
        )
        result = await self.engines[self._engine_index(context)].generate(request)
        if result.finish_reason == FinishReason.ERROR:
            raise RuntimeError(f"the simulated PRM failed to score a step: {result.error}")
        self.calls += 1
        self.prompt_tokens += result.prompt_tokens
        self.cached_tokens += result.cached_tokens
        return result

    @property
    def busy_s(self) -> float:
        """Modeled seconds the PRM engines spent in iterations."""
        return sum(engine.busy_s for engine in self.engines)

    def gpus(self) -> int:
        """GPUs the PRM adds to the cluster (none when it shares the policy's)."""
        return 0 if self.colocated else len(self.engines) * self.policy.tp

    async def close(self) -> None:
        for engine in self.engines:
            await engine.close()

    def _engine_index(self, context: StepContext) -> int:
        if self.colocated:  # the PRM engine on the GPU that generated the step
            return int(context.result.meta.get("device", 0)) % len(self.engines)
        if context.problem not in self._engine_of:  # a query sticks to one engine (its prefix cache)
            counts = [0] * len(self.engines)
            for index in self._engine_of.values():
                counts[index] += 1
            self._engine_of[context.problem] = min(range(len(counts)), key=counts.__getitem__)
        return self._engine_of[context.problem]


def prm_input(problem: str, steps: Sequence[str]) -> str:
    """The text a PRM reads: the problem, then the steps; a parent's is a prefix of its child's."""
    return problem.strip() + "\n\n" + "\n\n".join(step.strip() for step in steps)


def prm_policy(reward: RewardConfig, policy: PolicyConfig) -> PolicyConfig:
    """The PolicyConfig of a PRM engine: the PRM model on the policy's simulated GPU type."""
    sim = SimSettings.of(policy)
    settings = dataclasses.replace(sim, spec_decode="", accept_len=0.0, draft_steps=0)
    model = reward.model or DEFAULT_PRM
    try:
        resolve_model_name(model)
    except KeyError as exc:
        raise ValueError(f"reward.model: {exc.args[0]}") from exc
    prm = PolicyConfig(
        backend="sim",
        model=model,
        tp=reward.tp,
        max_batch_size=reward.max_batch_size,
        mem_fraction_static=memory_share(reward, policy),
        backends={"sim": settings},
    )
    prm.validate()
    return prm


def memory_share(reward: RewardConfig, policy: PolicyConfig) -> float:
    """The PRM engine's share of its GPU's memory; on the policy's GPU the two shares must fit."""
    if not colocated(reward):
        return reward.mem_fraction_static
    policy_share = policy.mem_fraction_static
    share = reward.mem_fraction_static or MEM_FRACTION - policy_share
    if not policy_share or share <= 0 or policy_share + share > 1:
        raise ValueError(
            "reward.num_gpus < 1 puts the PRM on the policy's GPU: split its memory with "
            f"policy.mem_fraction_static and reward.mem_fraction_static (now {policy_share} and "
            f"{reward.mem_fraction_static}; 0 = the rest of {MEM_FRACTION}), e.g. 0.55 and 0.35"
        )
    return share


def is_modeled_prm(reward: RewardConfig) -> bool:
    """Whether reward.kind names a SimPRMReward (a reward with engines of its own)."""
    factory = REWARDS.get(reward.kind)
    return isinstance(factory, type) and issubclass(factory, SimPRMReward)


def colocated(reward: RewardConfig) -> bool:
    """Whether the modeled PRM shares the policy engines' GPUs (reward.num_gpus < 1)."""
    return reward.num_gpus < 1


def share_gpus(config: Config, engines: Sequence[SimEngine]) -> list[SharedDevice | None]:
    """One entry per policy engine: the device it now shares with a colocated PRM (set on
    the engine, before it starts), else None."""
    if not (is_modeled_prm(config.reward) and colocated(config.reward)):
        return [None] * len(engines)
    devices: list[SharedDevice | None] = []
    for index, engine in enumerate(engines):
        engine.device = SharedDevice(index)
        devices.append(engine.device)
    return devices


def build_sim_reward(config: Config, devices: Sequence[SharedDevice | None] = ()) -> Any:
    """The reward of a simulated batch: a modeled PRM gets the policy and its devices."""
    if is_modeled_prm(config.reward):
        return REWARDS.build(config.reward.kind, config.reward, config.policy, devices)
    return REWARDS.build(config.reward.kind, config.reward)


def reward_gpus(config: Config) -> int:
    """GPUs a simulated batch's reward holds beyond the policy's (a PRM on GPUs of its own)."""
    if not is_modeled_prm(config.reward) or colocated(config.reward):
        return 0
    return config.reward.num_engines * config.reward.tp
