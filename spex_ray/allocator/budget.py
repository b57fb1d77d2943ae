"""BudgetAllocator: the one cluster-wide Ray actor that shares speculative slots.

A thin wrapper around BudgetBook (policy.py). Engines (or the pool) register their knee
and report their MAIN load with the speculative capacity they offer; queries report their demand through a LeaseBudget
(lease.py) and get a Grant back. Every method is async and never awaits, so calls run
one at a time on the actor's event loop and each sees a consistent book.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

import ray

from spex_ray.allocator.policy import BudgetBook, Demand, Grant, Mode
from spex_ray.allocator.usage import BudgetUsage

ALLOCATOR_NAME = "spex_ray_budget_allocator"
_LATENCY_WINDOW = 10_000  # update() latencies kept for the p99

log = logging.getLogger(__name__)


class _LatencyStats:
    """Count, mean and p99 of a stream of durations in microseconds (p99 over a window)."""

    def __init__(self) -> None:
        self.count = 0
        self.total_us = 0.0
        self.window: deque[float] = deque(maxlen=_LATENCY_WINDOW)

    def add(self, us: float) -> None:
        self.count += 1
        self.total_us += us
        self.window.append(us)

    def summary(self) -> dict[str, float]:
        if not self.count:
            return {"count": 0, "mean_us": 0.0, "p99_us": 0.0, "max_us": 0.0}
        ordered = sorted(self.window)
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        return {
            "count": self.count,
            "mean_us": self.total_us / self.count,
            "p99_us": p99,
            "max_us": ordered[-1],
        }


@ray.remote(num_cpus=0)
class BudgetAllocator:
    """Speculative slots per engine (its reported capacity, else knee - MAIN in flight), shared among queries."""

    def __init__(
        self, mode: Mode = "utility", tau: float = 1.0, default_knee: int = 8, lease_ttl_s: float = 60.0
    ) -> None:
        self._book = BudgetBook(mode, tau, default_knee)
        self._latency = _LatencyStats()
        self._usage = BudgetUsage()
        self.lease_ttl_s = lease_ttl_s
        self._reaper: asyncio.Task | None = None

    async def config(self) -> dict[str, Any]:
        """The policy in force: mode, tau, default_knee."""
        book = self._book
        return {"mode": book.mode, "tau": book.tau, "default_knee": book.default_knee}

    async def configure(self, mode: Mode, tau: float, default_knee: int) -> None:
        """Change the policy and re-share every engine."""
        self._book.configure(mode, tau, default_knee)
        self._book.recompute_all()

    async def register_engine(self, engine_id: str, knee: int) -> None:
        """Add an engine, or change its knee (its usage figures start afresh)."""
        self._book.set_engine(engine_id, knee)
        self._usage.start(engine_id, time.monotonic())
        self._record(engine_id)

    async def deregister_engine(self, engine_id: str) -> None:
        """The engine left the pool."""
        self._book.remove_engine(engine_id)

    async def report_main(self, engine_id: str, n: int, spec_capacity: int | None = None) -> None:
        """The engine now runs `n` primary sequences and offers `spec_capacity` SPEC ones beside
        them (EngineLoad.spec_capacity; None: keep the last, else knee - n)."""
        self._book.report_main(engine_id, n, spec_capacity)
        self._usage.offered(engine_id, n, spec_capacity)
        self._record(engine_id)

    async def update(self, demand: Demand) -> Grant:
        """Record a query's demand; return its grant and the book version."""
        self._start_reaper()
        start = time.perf_counter()
        slots = self._book.update(demand, time.monotonic())
        self._latency.add((time.perf_counter() - start) * 1e6)
        self._record(demand.engine_id)
        return Grant(slots, self._book.version)

    async def release(self, query_id: str) -> None:
        """The query is done; its slots go back to its engine."""
        engine_id = self._book.engine_of(query_id)
        self._book.release(query_id)
        if engine_id is not None:
            self._record(engine_id)

    def _record(self, engine_id: str) -> None:
        book = self._book
        self._usage.record(engine_id, book.budget(engine_id), book.granted_on(engine_id), time.monotonic())

    def _start_reaper(self) -> None:
        if self._reaper is None:
            self._reaper = asyncio.get_running_loop().create_task(self._reap())

    async def _reap(self) -> None:
        """A query whose process died never releases its slots: expire leases not refreshed in time."""
        while True:
            await asyncio.sleep(self.lease_ttl_s / 4)
            stale = self._book.expire(time.monotonic(), self.lease_ttl_s)
            if stale:
                log.warning("expired %d stale speculative leases: %s", len(stale), stale[:5])

    async def snapshot(self) -> dict[str, Any]:
        """Grants, per-engine budgets, demands, update() latency stats (microseconds), and per
        engine the budget's usage since it registered (allocator/usage.py)."""
        book = self._book
        engines = book.engines()
        return {
            "version": book.version,
            "mode": book.mode,
            "tau": book.tau,
            "grants": book.grants(),
            "engines": engines,
            "budgets": {e: info["budget"] for e, info in engines.items()},
            "demands": [vars(d).copy() for d in book.demands()],
            "latency": self._latency.summary(),
            "usage": self._usage.summary(time.monotonic()),
        }


def get_or_create_allocator(
    mode: Mode = "utility", tau: float = 1.0, default_knee: int = 8, namespace: str | None = None
) -> ray.actor.ActorHandle:
    """The cluster's one BudgetAllocator, created on first use (owned by this job).

    If it already exists with another policy, the policy is switched (with a warning):
    sequential benchmarks of fifo vs utility in one driver must not silently reuse the first.
    """
    # restarted if it dies: engines re-register and queries re-report, so speculation resumes
    options = {"name": ALLOCATOR_NAME, "namespace": namespace, "get_if_exists": True, "max_restarts": 3}
    wanted = {"mode": mode, "tau": float(tau), "default_knee": int(default_knee)}
    for attempt in range(10):
        handle = BudgetAllocator.options(**options).remote(mode=mode, tau=tau, default_knee=default_knee)
        try:
            current = ray.get(handle.config.remote(), timeout=60)
            break
        except ray.exceptions.RayActorError:  # the last batch's allocator, on its way out
            if attempt == 9:
                raise
            time.sleep(0.5)
    if current != wanted:
        log.warning("BudgetAllocator policy %s -> %s", current, wanted)
        ray.get(handle.configure.remote(mode, tau, default_knee))
    return handle
