"""Step rewards: the policy's own confidence, a process reward model (prm), or the simulator's."""

from spex_ray.registry import Registry
from spex_ray.rewards.base import Reward, StepContext

REWARDS = Registry("reward")
REWARDS.register("confidence", "spex_ray.rewards.confidence:ConfidenceReward")
REWARDS.register("prm", "spex_ray.rewards.prm:PRMReward")
REWARDS.register("sim", "spex_ray.sim.reward:SimReward")

__all__ = ["REWARDS", "Reward", "StepContext"]
