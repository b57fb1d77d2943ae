"""The placement of engine and reward actors: their GPUs, and STRICT_PACK groups for tensor
parallel (which engine serves a query is the runtime's Router's business)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spex_ray.config import PolicyConfig, RewardConfig
from spex_ray.errors import RunError
from spex_ray.registries import SCORERS

# -- placement: what an engine actor asks Ray for ------------------------------------------------

PLACEMENT_TIMEOUT_S = 900.0  # waiting this long for a placement group's resources is an error


@dataclass(frozen=True)
class ActorResources:
    """One engine actor's Ray resources and, for a tensor-parallel engine, the STRICT_PACK
    placement group it is scheduled into (`bundles`; empty = no placement group)."""

    num_gpus: float
    num_cpus: float
    bundles: tuple[dict[str, float], ...] = ()
    strategy: str = "STRICT_PACK"


def engine_resources(num_gpus: float, num_cpus: float, tp: int, needs_gpus: bool) -> ActorResources:
    """Resources of an engine actor. An engine on the GPU with num_gpus 0 gets `tp` GPUs (its
    processes see the GPUs Ray assigns to the actor). A tensor-parallel engine reserves one
    bundle of all its GPUs plus a CPU per TP rank (SGLang runs one scheduler process per
    rank beside the actor) in a STRICT_PACK group, so it lands on one node or waits whole.
    CPU engines keep exactly what they ask for."""
    gpus = float(num_gpus) if num_gpus > 0 else (float(tp) if needs_gpus else 0.0)
    if tp > 1 and gpus >= 1:
        return ActorResources(gpus, num_cpus, ({"GPU": gpus, "CPU": float(num_cpus) + tp},))
    return ActorResources(gpus, num_cpus)


def policy_resources(policy: PolicyConfig) -> ActorResources:
    """Resources of a policy engine actor: GPUs as its backend's settings say it needs."""
    return engine_resources(policy.num_gpus, policy.num_cpus, policy.tp, policy.settings().needs_gpu())


def reward_resources(reward: RewardConfig) -> ActorResources:
    """Resources of a reward actor: GPUs as its scorer says it needs (SGLang PRMs always)."""
    on_gpu = SCORERS.get(reward.scorer).needs_gpu(reward)
    return engine_resources(reward.num_gpus, reward.num_cpus, reward.tp, on_gpu)


def actor_options(resources: ActorResources) -> tuple[dict[str, Any], Any]:
    """Ray `.options()` for an actor with `resources`, and its placement group (None without).

    The placement group is created and waited for here, so a cluster that cannot host the
    engine fails with the bundle it could not place rather than hanging silently.
    """
    options: dict[str, Any] = {"num_gpus": resources.num_gpus, "num_cpus": resources.num_cpus}
    if not resources.bundles:
        return options, None
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    group = placement_group(list(resources.bundles), strategy=resources.strategy)
    try:
        ray.get(group.ready(), timeout=PLACEMENT_TIMEOUT_S)
    except ray.exceptions.GetTimeoutError as exc:
        remove_placement_group(group)
        raise RunError(
            f"could not reserve {list(resources.bundles)} ({resources.strategy}) in {PLACEMENT_TIMEOUT_S:.0f} s; "
            f"the cluster has {ray.cluster_resources()}"
        ) from exc
    options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
        placement_group=group, placement_group_bundle_index=0
    )
    return options, group


def start_actors(
    actor_cls: Any, config: PolicyConfig | RewardConfig, resources: ActorResources, prefix: str, count: int
) -> tuple[list[Any], list[Any]]:
    """Start `count` actors `actor_cls(config, f"{prefix}-{i}")` with `resources`, wait for their
    start() (at most startup.START_TIMEOUT_S); returns the actors and their placement groups
    (tensor parallel only)."""
    from spex_ray.actors.startup import wait_for_start

    actors, groups = [], []
    for i in range(count):
        options, group = actor_options(resources)
        actors.append(actor_cls.options(**options).remote(config, f"{prefix}-{i}"))
        if group is not None:
            groups.append(group)
    try:
        wait_for_start(actors, prefix, resources)  # bounded; says which resource is short
    except BaseException:
        remove_groups(groups)
        raise
    return actors, groups


def remove_groups(groups: list[Any]) -> None:
    """Free the placement groups of engines that were shut down."""
    if not groups:
        return
    from ray.util.placement_group import remove_placement_group

    for group in groups:
        remove_placement_group(group)
