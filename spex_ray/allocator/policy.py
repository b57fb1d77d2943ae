"""Inter-query speculative budget allocation (SPEX §inter-query): the pure policy.

Each engine has a speculative budget: the speculative capacity it reports with its MAIN load
(EngineLoad.spec_capacity: the SPEC sequences whose marginal step cost keeps its MAIN
sequences' step within policy.max_slowdown, engines/capacity.py), or, until it reports one,
its knee concurrency minus the primary (MAIN) sequences in flight. The queries speculating on
that engine share the budget by a softmax over their utility, capped at what each can use. BudgetBook keeps the state and the
invariant (grants on an engine never exceed its budget); the Ray actor in budget.py wraps
it. No Ray in here; every call is pure Python and O(n log n) in the queries of one engine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Mode = Literal["utility", "fifo"]
MODES: tuple[str, ...] = ("utility", "fifo")

# A query whose usefulness is 0 (an EMA that decayed to 0) would, without a floor, have
# utility 0 and so a share of 0: it would never speculate, and its usefulness could never
# be measured again. The floor keeps such queries in the softmax at a low weight so they
# get leftover slots and can prove themselves.
USEFULNESS_FLOOR = 0.05


@dataclass(frozen=True)
class Demand:
    """What one query asks of the allocator.

    eligible:    C_q, branches the query could speculate on right now.
    usefulness:  P_q, EMA of the fraction of its speculative nodes the real search kept.
    reusable_kv: S_kv, fraction of the speculative prompts already in the prefix cache.
    order:       arrival order of the query (used by fifo and to break ties).
    """

    query_id: str
    engine_id: str
    eligible: int
    usefulness: float
    reusable_kv: float = 0.0
    order: int = 0

    def __post_init__(self) -> None:
        if self.eligible < 0:
            raise ValueError(f"Demand {self.query_id!r}: eligible must be >= 0")
        for name in ("usefulness", "reusable_kv"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:  # also rejects NaN
                raise ValueError(f"Demand {self.query_id!r}: {name} must be in [0, 1], got {value}")


@dataclass(frozen=True)
class Grant:
    """The allocator's answer: speculative slots now held, and the book version it came from."""

    slots: int
    version: int


def utility(d: Demand) -> float:
    """Expected useful speculative work of a query, in slots.

    eligible * usefulness is the number of its speculative branches expected to be kept;
    (1 + reusable_kv) favours queries whose speculative prompts are already cached, since
    their speculation skips prefill and costs less per useful token. usefulness is floored at
    USEFULNESS_FLOOR so that new queries are not starved.
    """
    return d.eligible * max(d.usefulness, USEFULNESS_FLOOR) * (1.0 + d.reusable_kv)


def share_slots(free: int, demands: list[Demand], mode: Mode = "utility", tau: float = 1.0) -> dict[str, int]:
    """Split `free` slots among `demands`: integers, each <= its eligible, sum <= free.

    utility: softmax(utility / (max utility * tau)) shares of `free`, water-filled (a query's share above
             its eligible goes to the others by the same softmax), rounded by largest
             remainder, ties to the earlier arrival (then input order). Small tau: the best query takes what it
             can use first; large tau: near-even split.
    fifo:    in arrival order, each query takes min(eligible, what is left).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    grants = {d.query_id: 0 for d in demands}
    if len(grants) != len(demands):
        raise ValueError("duplicate query_id in demands")
    wanting = [d for d in demands if d.eligible > 0]
    if free <= 0 or not wanting:
        return grants
    if free >= sum(d.eligible for d in wanting):  # room for all: either mode grants every want
        grants.update((d.query_id, d.eligible) for d in wanting)
        return grants
    if mode == "fifo":
        left = free
        for d in sorted(wanting, key=_arrival):
            grants[d.query_id] = take = min(d.eligible, left)
            left -= take
        return grants
    shares = _water_fill(free, wanting, tau)
    grants.update(_round_largest_remainder(shares, wanting, min(free, sum(d.eligible for d in wanting))))
    return grants


def _arrival(d: Demand) -> tuple[int, str]:
    return (d.order, d.query_id)


def _water_fill(free: int, demands: list[Demand], tau: float) -> list[float]:
    """Real-valued softmax shares of `free` (by position), capped at eligible, excess redistributed.

    With weights w = exp(utility / tau), query i saturates iff free' * w_i / W' >= eligible_i
    for what is left (free', W') after the queries that saturate before it; queries
    saturate in increasing order of eligible / w, so one sorted walk finds them, and the
    rest split what is left by their weights. Weights stay in log space (tiny tau).
    """
    # Utilities relative to the best query, so tau means the same at any scale of demand.
    utilities = [utility(d) for d in demands]
    scale = max(utilities) or 1.0
    z = [u / scale / tau for u in utilities]
    log, exp = math.log, math.exp  # locals: this loop runs at every re-share
    ranked = sorted((log(d.eligible) - z[i], d.order, i) for i, d in enumerate(demands))
    n = len(ranked)
    suffix_lse = [-math.inf] * (n + 1)  # log sum of weights of ranked[pos:]
    top, acc = -math.inf, 0.0
    for pos in range(n - 1, -1, -1):
        zi = z[ranked[pos][2]]
        if zi > top:
            acc, top = acc * exp(top - zi) + 1.0, zi
        else:
            acc += exp(zi - top)
        suffix_lse[pos] = top + log(acc)
    shares = [0.0] * n
    left, pos = float(free), 0
    while pos < n and left > 0:
        key, _, i = ranked[pos]
        if key > math.log(left) - suffix_lse[pos]:
            break
        shares[i] = float(demands[i].eligible)
        left -= demands[i].eligible
        pos += 1
    if left > 0:
        for _, _, i in ranked[pos:]:
            shares[i] = left * math.exp(z[i] - suffix_lse[pos])
    return shares


def _round_largest_remainder(shares: list[float], demands: list[Demand], total: int) -> dict[str, int]:
    """Integers summing to `total` (each <= eligible): floors, then +1 by largest remainder."""
    floors = [min(d.eligible, int(share + 1e-9)) for share, d in zip(shares, demands, strict=True)]
    units = total - sum(floors)
    if units > 0:
        ranked = sorted(
            (-round(shares[i] - floors[i], 9), d.order, i)
            for i, d in enumerate(demands)
            if floors[i] < d.eligible
        )
        for _, _, i in ranked[:units]:
            floors[i] += 1
    return {d.query_id: floors[i] for i, d in enumerate(demands)}


class BudgetBook:
    """Engines' speculative budgets and the per-query grants; the allocator's whole state.

    Invariant: the grants on an engine, as read, sum to at most its budget (its reported
    speculative capacity, else knee - MAIN in flight): every change marks that engine's
    shares stale and every read of a grant re-shares the stale engines first. Re-sharing on
    read rather than on each change gives the very grants an eager re-share would (the
    shares are a function of the engine's current state), but a burst of demand changes
    between two reads costs one re-share. Engines never registered get `default_knee`.
    """

    def __init__(self, mode: Mode = "utility", tau: float = 1.0, default_knee: int = 8) -> None:
        self.configure(mode, tau, default_knee)
        self._knee: dict[str, int] = {}
        self._main: dict[str, int] = {}
        self._capacity: dict[str, int] = {}  # engine -> the speculative capacity it reported
        self._demands: dict[str, Demand] = {}
        self._grants: dict[str, int] = {}
        self._by_engine: dict[str, dict[str, Demand]] = {}
        self._seen: dict[str, float] = {}  # query -> time of its last update
        self._stale: dict[str, None] = {}  # engines to re-share before the next read, in order
        self.version = 0

    def configure(self, mode: Mode, tau: float, default_knee: int) -> None:
        """Set the policy; call recompute_all() afterwards if demands are already recorded."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not tau > 0 or default_knee < 0:
            raise ValueError("need tau > 0 and default_knee >= 0")
        self.mode, self.tau, self.default_knee = mode, float(tau), int(default_knee)

    def set_engine(self, engine_id: str, knee: int) -> None:
        """Register (or re-size) an engine with its knee concurrency."""
        if knee < 0:
            raise ValueError("knee must be >= 0")
        self._knee[engine_id] = int(knee)
        self._recompute(engine_id)

    def remove_engine(self, engine_id: str) -> None:
        """Forget an engine (removed from the pool) and the demands on it; queries that moved
        off it report again on their new engine."""
        for demand in list(self._by_engine.get(engine_id, {}).values()):
            self._remove(demand)
        self._knee.pop(engine_id, None)
        self._main.pop(engine_id, None)
        self._capacity.pop(engine_id, None)
        self.version += 1

    def report_main(self, engine_id: str, main_in_flight: int, spec_capacity: int | None = None) -> None:
        """Record how many primary sequences the engine is running and, when it has a figure
        (EngineLoad.spec_capacity), the SPEC sequences it offers beside them; re-shares its budget.
        A capacity of None keeps the last one reported (none yet: knee - MAIN in flight)."""
        if main_in_flight < 0:
            raise ValueError("main_in_flight must be >= 0")
        if spec_capacity is not None:
            if spec_capacity < 0:
                raise ValueError("spec_capacity must be >= 0")
            self._capacity[engine_id] = int(spec_capacity)
        self._main[engine_id] = int(main_in_flight)
        self._recompute(engine_id)

    def update(self, demand: Demand, now: float = 0.0) -> int:
        """Record a query's demand (at time `now`), re-share its engine, return the query's grant."""
        self.record(demand, now)
        return self.grant(demand.query_id)

    def record(self, demand: Demand, now: float = 0.0) -> None:
        """update() without reading the grant back (the re-share waits for the next read)."""
        self._seen[demand.query_id] = now
        old = self._demands.get(demand.query_id)
        if old == demand:  # a plain refresh: nothing changed, no re-share
            return
        if old is not None and old.engine_id != demand.engine_id:
            self._remove(old)
            self._recompute(old.engine_id)
        self._demands[demand.query_id] = demand
        self._by_engine.setdefault(demand.engine_id, {})[demand.query_id] = demand
        self._recompute(demand.engine_id)

    def release(self, query_id: str) -> None:
        """Forget a query (it finished); its slots go to the others on its engine."""
        old = self._demands.get(query_id)
        if old is None:
            return
        self._remove(old)
        self._recompute(old.engine_id)

    def expire(self, now: float, ttl: float) -> list[str]:
        """Release queries not heard from for `ttl` seconds (their process died); returns them."""
        stale = [q for q, seen in self._seen.items() if now - seen > ttl and q in self._demands]
        for query_id in stale:
            self.release(query_id)
        return stale

    def recompute_all(self) -> None:
        """Re-share every engine (after configure())."""
        for engine_id in set(self._by_engine) | set(self._knee):
            self._recompute(engine_id)

    def budget(self, engine_id: str) -> int:
        """Speculative slots of an engine: its reported capacity, else max(0, knee - MAIN in flight)."""
        if engine_id in self._capacity:
            return self._capacity[engine_id]
        knee = self._knee.get(engine_id, self.default_knee)
        return max(0, knee - self._main.get(engine_id, 0))

    def engine_of(self, query_id: str) -> str | None:
        """The engine a recorded query speculates on (None if unknown)."""
        demand = self._demands.get(query_id)
        return demand.engine_id if demand is not None else None

    def main_in_flight(self, engine_id: str) -> int | None:
        """The engine's MAIN in flight as engines() reports it (None for an unknown engine)."""
        if engine_id in self._main:
            return self._main[engine_id]
        return 0 if engine_id in self._knee or engine_id in self._by_engine else None

    def grant(self, query_id: str) -> int:
        """The query's current grant (0 if unknown)."""
        if self._stale:
            self._reshare()
        return self._grants.get(query_id, 0)

    def grants(self) -> dict[str, int]:
        """Every recorded query's grant."""
        self._reshare()
        return dict(self._grants)

    def granted_on(self, engine_id: str) -> int:
        """Sum of the grants on an engine."""
        self._reshare()
        return sum(self._grants[q] for q in self._by_engine.get(engine_id, {}))

    def demands(self) -> list[Demand]:
        """Every recorded demand."""
        return list(self._demands.values())

    def engines(self) -> dict[str, dict[str, int]]:
        """Per engine: knee, MAIN in flight, reported capacity (-1: none), budget, granted, queries."""
        ids = set(self._knee) | set(self._main) | set(self._by_engine)
        return {
            e: {
                "knee": self._knee.get(e, self.default_knee),
                "main": self._main.get(e, 0),
                "capacity": self._capacity.get(e, -1),
                "budget": self.budget(e),
                "granted": self.granted_on(e),
                "queries": len(self._by_engine.get(e, {})),
            }
            for e in sorted(ids)
        }

    def _remove(self, demand: Demand) -> None:
        del self._demands[demand.query_id]
        self._seen.pop(demand.query_id, None)
        self._grants.pop(demand.query_id, None)
        on_engine = self._by_engine.get(demand.engine_id, {})
        on_engine.pop(demand.query_id, None)
        if not on_engine:
            self._by_engine.pop(demand.engine_id, None)

    def _recompute(self, engine_id: str) -> None:
        """The engine's shares changed: count a new version, re-share at the next read."""
        self.version += 1
        self._stale[engine_id] = None

    def _reshare(self) -> None:
        stale, self._stale = self._stale, {}
        for engine_id in stale:
            on_engine = self._by_engine.get(engine_id)
            if on_engine:
                shares = share_slots(self.budget(engine_id), list(on_engine.values()), self.mode, self.tau)
                self._grants.update(shares)
