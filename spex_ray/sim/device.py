"""SharedDevice: one simulated GPU that several simulated engines time-share.

Two engines on one GPU (a policy and a process reward model placed together, as
`reward.num_gpus` < 1 does on a real cluster) cannot run their forward passes at the same
time: the GPU runs one kernel stream's iteration, then the other's. A SimEngine given a
device holds it for each iteration (sim/engine.py), so colocated engines' iterations
alternate and each waits for the other's. The wait is charged in modeled time only when
engines pace the clock (time_scale > 0, which the discrete-event simulation uses).
"""

from __future__ import annotations

import asyncio


class SharedDevice:
    """A simulated GPU: `index` names it; `turn` is held for one engine iteration at a time."""

    def __init__(self, index: int = 0) -> None:
        self.index = index
        self.turn = asyncio.Lock()  # FIFO: engines waiting for the GPU take turns
