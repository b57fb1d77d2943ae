"""Every registry of named backends, in one module that imports nothing heavy.

The config validates names against these without importing what they name (the targets
are "module:attr" strings, imported on first use), so config.py depends on no engine,
reward or algorithm module. An engine backend is registered by its settings dataclass
(the `policy.<backend>` section), which names the backend's engine class.
"""

from __future__ import annotations

from spex_ray.registry import Registry

BACKENDS = Registry("engine backend")  # name -> its settings dataclass (see config.BackendSettings)
BACKENDS.register("hf", "spex_ray.engines.hf_settings:HFSettings")
BACKENDS.register("sglang", "spex_ray.engines.sglang_settings:SGLangSettings")
BACKENDS.register("sim", "spex_ray.sim.settings:SimSettings")

REWARDS = Registry("reward")
REWARDS.register("confidence", "spex_ray.rewards.confidence:ConfidenceReward")
REWARDS.register("prm", "spex_ray.rewards.prm:PRMReward")
REWARDS.register("sim", "spex_ray.sim.reward:SimReward")
REWARDS.register("sim_prm", "spex_ray.sim.prm:SimPRMReward")  # the sim reward + a modeled PRM pass

SCORERS = Registry("prm scorer")  # the PRMs a reward actor hosts (reward.scorer)
SCORERS.register("step_tag", "spex_ray.rewards.prm_sglang:StepTagScorer")
SCORERS.register("qwen_prm", "spex_ray.rewards.prm_hf:QwenPRMScorer")
SCORERS.register("llemma_prm", "spex_ray.rewards.prm_hf:LlemmaPRMScorer")

ALGORITHMS = Registry("search algorithm")
ALGORITHMS.register("rebase", "spex_ray.tree.algorithms.rebase:Rebase")
ALGORITHMS.register("mcts", "spex_ray.tree.algorithms.mcts:MCTS")
ALGORITHMS.register("ets", "spex_ray.tree.algorithms.ets:ETS")
ALGORITHMS.register("beam", "spex_ray.tree.algorithms.beam:BeamSearch")
ALGORITHMS.register("best_of_n", "spex_ray.tree.algorithms.best_of_n:BestOfN")
ALGORITHMS.register("dvts", "spex_ray.tree.algorithms.dvts:DVTS")

GENERATED = Registry("generated dataset")  # datasets made, not read: name -> rows(limit | None, offset, seed)
GENERATED.register("sim", "spex_ray.sim.workload:sim_dataset")

DATASETS = Registry("named dataset")  # read by name: a local copy, else the hub (tasks/catalog.py)
DATASETS.register("gsm8k", "spex_ray.tasks.catalog:GSM8K")
DATASETS.register("math500", "spex_ray.tasks.catalog:MATH500")
DATASETS.register("aime24", "spex_ray.tasks.catalog:AIME24")
DATASETS.register("aime25", "spex_ray.tasks.catalog:AIME25")
