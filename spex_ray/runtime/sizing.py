"""PoolSizing: how many engines a batch wants, from the queries it has left.

An engine takes `queries_per_engine` queries before another pays for itself (default: as
many as its batch holds at the search's width); the pool wants enough engines for the
queries that are running or waiting to run, within [min_engines, max_engines].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from spex_ray.config import Config


@dataclass(frozen=True)
class PoolSizing:
    min_engines: int
    max_engines: int  # -1: not known yet (one per GPU: resolved against the cluster)
    queries_per_engine: int
    concurrency: int  # queries in flight at most

    @classmethod
    def of(cls, config: Config) -> PoolSizing:
        policy = config.policy
        per_engine = policy.queries_per_engine or max(1, policy.max_batch_size // max(1, config.search.width))
        return cls(policy.min_engines, policy.max_engines, per_engine, config.run.concurrency)

    def with_max(self, max_engines: int) -> PoolSizing:
        return PoolSizing(
            self.min_engines, max(max_engines, self.min_engines, 1), self.queries_per_engine, self.concurrency
        )

    def wanted(self, queries_left: int) -> int:
        """Engines for `queries_left` queries (running plus waiting), within the bounds."""
        active = min(queries_left, self.concurrency)
        wanted = math.ceil(active / self.queries_per_engine)
        return max(self.min_engines, min(self.max_engines, wanted))
