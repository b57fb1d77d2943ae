"""spex_ray: fast reward-guided Tree-of-Thought reasoning with speculative exploration on Ray.

import spex_ray
result = spex_ray.solve(["What is 2 + 3?"], overrides=["search.width=4"])
print(result.solutions[0].answer)
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Config", "Problem", "RunResult", "Solution", "solve"]


def __getattr__(name: str) -> Any:
    # Lazy, so `import spex_ray.tree` and friends do not pay for importing Ray.
    if name in ("solve", "RunResult"):
        from spex_ray import api

        return getattr(api, name)
    if name == "Config":
        from spex_ray.config import Config

        return Config
    if name == "Problem":
        from spex_ray.tasks import Problem

        return Problem
    if name == "Solution":
        from spex_ray.io import Solution

        return Solution
    raise AttributeError(f"module 'spex_ray' has no attribute {name!r}")
