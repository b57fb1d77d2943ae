"""SPEX inter-query speculative budget: sharing policy, Ray actor, leases, calibration.

policy.py is Ray-free (the knee it starts from is in spex_ray/hardware/); the Ray parts (BudgetAllocator,
get_or_create_allocator, LeaseBudget) are imported lazily, on first access, so that
`from spex_ray.allocator import share_slots` does not import Ray.
"""

from __future__ import annotations

from spex_ray.allocator.policy import (
    USEFULNESS_FLOOR,
    BudgetBook,
    Demand,
    Grant,
    share_slots,
    utility,
)
from spex_ray.registry import lazy_attributes

_LAZY = {
    "ALLOCATOR_NAME": "spex_ray.allocator.budget",
    "BudgetAllocator": "spex_ray.allocator.budget",
    "get_or_create_allocator": "spex_ray.allocator.budget",
    "LeaseBudget": "spex_ray.allocator.lease",
}

__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = [
    "ALLOCATOR_NAME",
    "USEFULNESS_FLOOR",
    "BudgetAllocator",
    "BudgetBook",
    "Demand",
    "Grant",
    "LeaseBudget",
    "get_or_create_allocator",
    "share_slots",
    "utility",
]
