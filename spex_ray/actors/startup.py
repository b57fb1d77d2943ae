"""Waiting for actors to start: for a bounded time, and saying why when they do not.

An actor whose resources no node has waits for ever in Ray (e.g. policy.num_engines=3 with
one CPU each on a 2-CPU node). `wait_for_start` warns at once when the cluster's totals
cannot hold the actors (an autoscaler may still add nodes), gives up after `timeout_s`
naming the resource that is short, and turns an actor whose start() raised into one line
naming the actor and the cause.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import ray

from spex_ray.errors import RunError

if TYPE_CHECKING:
    from spex_ray.actors.pool import ActorResources

log = logging.getLogger(__name__)

START_TIMEOUT_S = 900.0  # scheduling plus start() (a large model loads in minutes)


class ActorStartError(RunError):
    """Actors that did not start in time, or whose start() failed."""


def wait_for_start(
    actors: list[Any], prefix: str, resources: ActorResources, timeout_s: float = START_TIMEOUT_S
) -> list[Any]:
    """The results of every actor's start() (actor i is `{prefix}-{i}`), waited for at most
    `timeout_s` seconds. On failure the actors are killed and ActorStartError says why."""
    shortage = resource_shortage(resources, len(actors), ray.cluster_resources())
    if shortage:
        log.warning(
            "%s: waiting up to %.0f s for nodes to join (an autoscaler may add them)", shortage, timeout_s
        )
    refs = [actor.start.remote() for actor in actors]
    try:
        _, pending = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
        if pending:
            names = ", ".join(f"{prefix}-{refs.index(ref)}" for ref in pending)
            reason = shortage or _held_elsewhere(resources, ray.available_resources())
            raise ActorStartError(f"{names} did not start within {timeout_s:g} s: {reason}")
        return [_started(ref, f"{prefix}-{i}") for i, ref in enumerate(refs)]
    except BaseException:
        for actor in actors:
            ray.kill(actor)
        raise


def resource_shortage(resources: ActorResources, count: int, cluster: Mapping[str, float]) -> str:
    """ "3 actors need CPU 3 (1 each); the cluster has CPU 2": the resources the cluster's
    totals cannot give `count` actors, or "" when they can."""
    short = []
    for name, each in _asks(resources).items():
        have = float(cluster.get(name, 0.0))
        if each * count > have:
            short.append(f"{name} {each * count:g} ({each:g} each); the cluster has {name} {have:g}")
    if not short:
        return ""
    return f"{count} {'actors need' if count > 1 else 'actor needs'} " + " and ".join(short)


def _held_elsewhere(resources: ActorResources, available: Mapping[str, float]) -> str:
    busy = [f"{name} {float(available.get(name, 0.0)):g} free" for name in _asks(resources)]
    return (
        f"the cluster has the resources in total but not free now ({', '.join(busy)}: other actors or "
        "jobs hold them), or start() is still loading the model"
    )


def _asks(resources: ActorResources) -> dict[str, float]:
    """What one actor takes from the cluster: its placement bundle, else its own CPU and GPU."""
    if resources.bundles:
        asks: dict[str, float] = {}
        for bundle in resources.bundles:
            for name, amount in bundle.items():
                asks[name] = asks.get(name, 0.0) + float(amount)
        return asks
    asks = {"CPU": float(resources.num_cpus), "GPU": float(resources.num_gpus)}
    return {name: amount for name, amount in asks.items() if amount > 0}


def _started(ref: Any, name: str) -> Any:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:  # start() raised: its own exception, one line
        cause = exc.cause if isinstance(exc.cause, BaseException) else exc
        raise ActorStartError(f"{name} failed to start: {type(cause).__name__}: {cause}") from None
    except ray.exceptions.RayError as exc:  # the actor died (e.g. out of memory while loading)
        message = str(exc).strip().splitlines()
        raise ActorStartError(
            f"{name} failed to start: {message[-1] if message else type(exc).__name__}"
        ) from None
