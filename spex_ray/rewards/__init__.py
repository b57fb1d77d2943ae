"""Step rewards: the policy's own confidence, a process reward model (prm), or the simulator's.

REWARDS (registries.py) names them."""

from spex_ray.registries import REWARDS
from spex_ray.rewards.base import Reward, StepContext

__all__ = ["REWARDS", "Reward", "StepContext"]
