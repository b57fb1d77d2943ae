"""The parts of a run's Config that one query's search reads, and nothing else."""

from __future__ import annotations

from dataclasses import dataclass

from spex_ray.config import Config, SearchConfig, SpexConfig


@dataclass(frozen=True)
class Sampling:
    """The sampling values every request of a search carries (from config.policy)."""

    max_new_tokens: int
    temperature: float
    top_p: float


@dataclass(frozen=True)
class SearchSettings:
    """What a QuerySearch needs: the search and spex sections, the sampling values, how a
    path's reward aggregates its steps (reward.path_score) and the speculative slots it
    holds when no SpecBudget is given, and its deadline."""

    search: SearchConfig
    spex: SpexConfig
    sampling: Sampling
    path_score: str  # min | last | mean
    spec_slots: int  # spex.spec_slots, or 0: the batch of an engine over the queries on each
    query_timeout_s: float = 0.0  # run.query_timeout_s: seconds the search may take; 0 = no deadline

    @classmethod
    def from_config(cls, config: Config) -> SearchSettings:
        policy = config.policy
        return cls(
            search=config.search,
            spex=config.spex,
            sampling=Sampling(policy.max_new_tokens, policy.temperature, policy.top_p),
            path_score=config.reward.path_score,
            spec_slots=config.spex.spec_slots or default_spec_slots(config),
            query_timeout_s=config.run.query_timeout_s,
        )


def default_spec_slots(config: Config) -> int:
    """Speculative slots per query without the allocator: one engine's batch shared by the
    queries on it (run.concurrency spread over the engines, at least one each)."""
    policy = config.policy
    engines = max(policy.num_engines, policy.max_engines, 1)
    per_engine = -(-config.run.concurrency // engines)  # ceil
    return max(1, policy.max_batch_size // per_engine)
