"""The simulated accelerator: a modeled GPU engine and a cluster simulation in modeled time.

    engine.py    SimEngine, the Engine protocol on a modeled GPU (continuous batching,
                 MAIN-before-SPEC admission, prefix cache, abort)
    settings.py  SimSettings (policy.sim): GPU, timing knobs, token-level speculative decoding
    timing.py    the roofline time of one engine iteration (hardware/roofline.py formulas)
    cache.py     the prefix cache over token ids
    workload.py  the seeded synthetic reasoning workload, and the `sim` dataset
    reward.py    SimReward, the step score the workload implies
    prm.py       SimPRMReward: that score after a modeled PRM forward pass (its own engines)
    device.py    SharedDevice: one simulated GPU time-shared by colocated engines
    loop.py      VirtualTimeLoop: asyncio on modeled time (discrete-event simulation)
    cluster.py   simulate(): a batch of queries on N simulated engines, in one process
    replay.py    oracle(): a baseline's trees replayed with perfect foresight
    plan.py      plan_cluster(): a configured batch on N simulated GPUs (`spex-ray simulate`)
    calibrate.py fit the workload to the trace of real runs

No Ray in here. `from spex_ray.sim import simulate, oracle, SimRun` imports lazily, so
building a SimEngine does not load the tree search.
"""

from __future__ import annotations

from spex_ray.registry import lazy_attributes

_LAZY = {
    "simulate": "spex_ray.sim.cluster",
    "SimRun": "spex_ray.sim.cluster",
    "oracle": "spex_ray.sim.replay",
}

__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = ["SimRun", "oracle", "simulate"]
