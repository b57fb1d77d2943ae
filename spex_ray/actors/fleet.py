"""EngineFleet: the driver's engine actors, a fixed pool or an elastic one.

A fixed pool starts policy.num_engines engines and waits for them (start_timeout_s, then
an error naming what an engine needs and what the cluster has). An elastic pool
(policy.max_engines) sizes itself from the queries left (runtime/sizing.py): it asks the
autoscaler ahead for one bundle per wanted engine (ray.autoscaler.sdk.request_resources)
and starts engine actors, which Ray schedules as nodes join; an engine idle for
idle_timeout_s is drained (no new queries), deregistered from the allocator, killed, and
its bundle dropped from the request, so the autoscaler can hand its node back.

Either way the fleet keeps every tree actor's router in step (add, drain, remove), restarts
a frozen engine (the monitor sees it answer or finish nothing for freeze_timeout_s: it is
killed and Ray restarts it, up to policy.restarts), and replaces an engine dead for good.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import ray

from spex_ray.actors.engine import EngineActor
from spex_ray.actors.monitor import EngineMonitor
from spex_ray.actors.pool import ActorResources, actor_options, policy_resources, remove_groups
from spex_ray.config import Config
from spex_ray.errors import RunError
from spex_ray.runtime.sizing import PoolSizing

log = logging.getLogger(__name__)


@dataclass
class _Member:
    name: str
    handle: Any
    ready: Any  # the ObjectRef of its start(), None once it serves
    asked_at: float
    group: Any = None  # its placement group (tensor parallel only)
    draining: bool = False


class EngineFleet:
    """Starts, grows, shrinks and heals the engine actors (see the module docstring)."""

    def __init__(self, config: Config, allocator: Any = None) -> None:
        self.policy = config.policy
        self.allocator = allocator
        self.resources = policy_resources(self.policy)
        self.elastic = self.policy.max_engines != 0
        self.sizing = PoolSizing.of(config)
        if self.policy.max_engines == -1:
            self.sizing = self.sizing.with_max(_cluster_gpus() // max(1, int(self.resources.num_gpus) or 1))
        self.monitor = EngineMonitor(freeze_timeout_s=self.policy.freeze_timeout_s)
        self.members: dict[str, _Member] = {}
        self.trees: list[Any] = []
        self.started = 0  # engines ever started (names are never reused)
        self.removed = 0
        self.restarted = 0
        self.failures: list[str] = []  # why engines failed to start, for the error if none does
        self._requested = -1

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, queries: int) -> None:
        """Start the first engines: the fixed pool (and wait for it), or what `queries` want."""
        if not self.elastic:
            for _ in range(self.policy.num_engines):
                self._launch(time.time())
            self._wait_started(self.policy.start_timeout_s)
            return
        self._resize(time.time(), queries)

    def attach(self, trees: list[Any]) -> None:
        """The tree actors whose routers the fleet keeps in step."""
        self.trees = list(trees)
        for tree in self.trees:
            self.attach_tree(tree)

    def attach_tree(self, tree: Any) -> None:
        """Tell a (restarted) tree actor every serving engine again."""
        for member in self.serving().values():
            tree.add_engine.remote(member.name, member.handle)

    def serving(self) -> dict[str, _Member]:
        return {n: m for n, m in self.members.items() if m.ready is None and not m.draining}

    def tick(self, now: float, queries_left: int) -> None:
        """One round of upkeep: engines that started, resizing, frozen and dead engines."""
        self._collect_started(now)
        for name in self.monitor.frozen(now):
            self._restart(name, now)
        for name in self.monitor.dead():
            self._replace(name, now)
        if self.elastic:
            self._resize(now, queries_left)

    def shutdown(self) -> list[dict[str, Any]]:
        """Close and kill every engine; their final stats (none for a dead one)."""
        if not self.members:
            return []
        handles = [m.handle for m in self.members.values()]
        stats = _final_stats(handles)
        if self.elastic:
            _request_bundles([])
        try:
            ray.get([h.close.remote() for h in handles], timeout=60)
        except Exception as exc:  # noqa: BLE001 - a dead engine has nothing to close
            log.debug("closing engines: %s", exc)
        for handle in handles:
            kill(handle)
        remove_groups([m.group for m in self.members.values() if m.group is not None])
        self.members.clear()
        return stats

    # -- starting ----------------------------------------------------------------------------

    def _launch(self, now: float) -> _Member:
        name = f"engine-{self.started}"
        self.started += 1
        options, group = actor_options(self.resources)
        options.update(max_restarts=self.policy.restarts, max_task_retries=0)
        handle = EngineActor.options(**options).remote(self.policy, name, self.allocator)
        member = _Member(name, handle, handle.start.remote(), now, group)
        self.members[name] = member
        return member

    def _collect_started(self, now: float) -> None:
        for member in [m for m in self.members.values() if m.ready is not None]:
            ready, _ = ray.wait([member.ready], timeout=0)
            if ready:
                self._started(member, now)

    def _started(self, member: _Member, now: float) -> None:
        ref, member.ready = member.ready, None
        try:
            info = ray.get(ref)
        except ray.exceptions.RayError as exc:
            self.failures.append(f"{member.name} failed to start: {str(exc).strip().splitlines()[-1]}")
            log.error("%s", self.failures[-1])
            self._forget(member)
            return
        log.info("%s ready after %.1fs: %s", member.name, now - member.asked_at, _describe(info))
        self.monitor.watch(member.name, member.handle, now)
        self._tell_trees("add_engine", member.name, member.handle)

    def _wait_started(self, timeout_s: float) -> None:
        pending = {m.ready: m for m in self.members.values() if m.ready is not None}
        ready, late = ray.wait(list(pending), num_returns=len(pending), timeout=timeout_s)
        now = time.time()
        for ref in ready:
            self._started(pending[ref], now)
        if late:
            names = ", ".join(pending[ref].name for ref in late)
            raise RunError(
                f"{names} did not start within policy.start_timeout_s={timeout_s:.0f}s: each engine needs "
                f"{_needs(self.resources)}; the cluster has {_free()} free of {ray.cluster_resources()}"
            )
        if not self.serving():
            raise RunError("no engine started: " + "; ".join(self.failures[-3:]))

    # -- resizing ----------------------------------------------------------------------------

    def _resize(self, now: float, queries_left: int) -> None:
        wanted = self.sizing.wanted(queries_left)
        live = [m for m in self.members.values() if not m.draining]
        for _ in range(wanted - len(live)):
            live.append(self._launch(now))
            log.info("pool grows to %d engines for %d queries", len(live), queries_left)
        if len(live) > wanted:
            self._shrink(now, len(live) - wanted)
        self._finish_drains()
        self._request(len([m for m in self.members.values() if not m.draining]))

    def _shrink(self, now: float, surplus: int) -> None:
        """Drain up to `surplus` engines idle for idle_timeout_s (not yet started ones first)."""
        for member in [m for m in self.members.values() if m.ready is not None][:surplus]:
            self._remove(member)  # asked for but never needed: nothing to drain
            surplus -= 1
        idle = [
            m
            for m in self.serving().values()
            if self.monitor.idle_for(m.name, now) >= self.policy.idle_timeout_s
        ]
        for member in idle[:surplus]:
            log.info("%s idle for %.0fs: draining it", member.name, self.monitor.idle_for(member.name, now))
            member.draining = True
            self._tell_trees("drain_engine", member.name)

    def _finish_drains(self) -> None:
        """Remove drained engines once nothing runs on them."""
        for member in [m for m in self.members.values() if m.draining]:
            if self.monitor.idle_for(member.name, time.time()) > 0:
                self._remove(member)

    def _remove(self, member: _Member) -> None:
        if self.allocator is not None:
            self.allocator.deregister_engine.remote(member.name)
        self._tell_trees("remove_engine", member.name)
        kill(member.handle)
        self._forget(member)
        self.removed += 1

    def _forget(self, member: _Member) -> None:
        self.members.pop(member.name, None)
        self.monitor.forget(member.name)
        if member.group is not None:
            remove_groups([member.group])

    def _request(self, engines: int) -> None:
        if engines != self._requested:
            _request_bundles([_bundle(self.resources)] * engines)
            self._requested = engines

    # -- healing -----------------------------------------------------------------------------

    def _restart(self, name: str, now: float) -> None:
        """Kill a frozen engine so Ray restarts it (its queries' requests fail and move)."""
        member = self.members.get(name)
        if member is None:
            return
        log.warning("%s finished nothing for %.0fs: restarting it", name, self.policy.freeze_timeout_s)
        kill(member.handle, no_restart=False)
        self.restarted += 1
        self.monitor.watch(name, member.handle, now)  # a fresh start for the restarted actor

    def _replace(self, name: str, now: float) -> None:
        """An engine dead for good (restarts used up): remove it and start another."""
        member = self.members.get(name)
        if member is None:
            return
        log.warning("%s is dead for good: replacing it", name)
        self._remove(member)
        self._launch(now)

    def _tell_trees(self, method: str, *args: Any) -> None:
        for tree in self.trees:
            getattr(tree, method).remote(*args)


def kill(handle: Any, no_restart: bool = True) -> None:
    """ray.kill, where an actor already gone is no error."""
    try:
        ray.kill(handle, no_restart=no_restart)
    except Exception as exc:  # noqa: BLE001 - dead, or its handle no longer valid: nothing to kill
        log.debug("kill: %s", exc)


def _bundle(resources: ActorResources) -> dict[str, float]:
    if resources.bundles:
        return dict(resources.bundles[0])
    bundle = {"CPU": resources.num_cpus, "GPU": resources.num_gpus}
    return {k: v for k, v in bundle.items() if v > 0}


def _request_bundles(bundles: list[dict[str, float]]) -> None:
    """Ask the autoscaler to keep room for `bundles` (a standing request, replaced each call)."""
    from ray.autoscaler.sdk import request_resources

    try:
        request_resources(bundles=bundles)
    except Exception as exc:  # noqa: BLE001 - no autoscaler here: the engines wait for resources
        log.debug("request_resources failed: %s", exc)


def _cluster_gpus() -> int:
    return int(ray.cluster_resources().get("GPU", 0))


def _needs(resources: ActorResources) -> dict[str, float]:
    return _bundle(resources)


def _free() -> dict[str, float]:
    return {k: v for k, v in ray.available_resources().items() if k in ("CPU", "GPU", "memory")}


def _describe(info: dict[str, Any]) -> str:
    threads = info.get("cpu_threads", 0)
    on_cpu = f" on CPU, {threads} torch threads (all cores)" if threads else ""
    return f"{info['backend']} {info['model']}{on_cpu}"


def _final_stats(handles: list[Any]) -> list[dict[str, Any]]:
    stats = []
    for handle in handles:
        try:
            load = ray.get(handle.load.remote(), timeout=10)
        except Exception:  # noqa: BLE001 - a dead engine has no stats, and that is no error
            continue
        stats.append(
            {
                "tokens_per_second": load.tokens_per_second,
                "mean_batch_occupancy": load.mean_batch_occupancy,
                "max_batch_size": load.max_batch_size,
            }
        )
    return stats
