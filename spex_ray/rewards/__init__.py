"""Step rewards: the policy's own confidence, or a process reward model (next issues)."""

from spex_ray.registry import Registry
from spex_ray.rewards.base import Reward, StepContext

REWARDS = Registry("reward")
REWARDS.register("confidence", "spex_ray.rewards.confidence:ConfidenceReward")
REWARDS.register("sim", "spex_ray.rewards.sim:SimReward")

__all__ = ["REWARDS", "Reward", "StepContext"]
