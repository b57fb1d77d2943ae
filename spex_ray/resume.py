"""What makes a finished row reusable: the search identity of a config and the default output.

A row of an output directory is reused only when the problem's text and gold are the ones it
was solved for and the directory's search identity (stored in its run.json) equals this
run's. The identity is every config value that changes what a search builds or reports:

- `policy`: all of it, the active backend's section (`policy.<backend>`) included, except
  where the engines run (RESOURCE_KEYS: num_engines, num_gpus, num_cpus, cache_dir);
- `reward`, `search`, `spex`: all of them, except the reward actors' resources;
- `run.seed`.

Not in it: `task` (the problems are compared row by row instead) and the rest of `run`
(output, resume, concurrency, ray_address, tree_actors, progress): they change how fast a
batch runs, not what a query's search is. Nor `run.query_timeout_s`: a row its deadline cut
short (status timeout) is not reused, like a failed one, so a rerun solves it again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from spex_ray.config import Config
from spex_ray.tasks import Problem

IDENTITY_SECTIONS = ("policy", "reward", "search", "spex")
RESOURCE_KEYS = {
    "policy": frozenset({"num_engines", "num_gpus", "num_cpus", "cache_dir"}),
    "reward": frozenset({"num_engines", "num_gpus", "num_cpus"}),
}
DEFAULT_OUTPUT_ROOT = "runs"


def search_identity(config: Config) -> dict[str, Any]:
    """The config values that change a search, as flat `section.key` -> value (JSON values,
    so an identity read back from run.json compares equal)."""
    data = config.to_dict()
    policy = config.policy
    shared = {key: value for key, value in data["policy"].items() if key not in policy.backends}
    data["policy"] = {**shared, policy.backend: dataclasses.asdict(policy.settings())}
    identity: dict[str, Any] = {}
    for section in IDENTITY_SECTIONS:
        skipped = RESOURCE_KEYS.get(section, frozenset())
        values = {key: value for key, value in data[section].items() if key not in skipped}
        identity.update(_flatten(section, values))
    identity["run.seed"] = config.run.seed
    return json.loads(json.dumps(identity, default=str))


def digest(value: Any) -> str:
    """A short stable hash of a JSON-able value."""
    blob = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def default_output(identity: Mapping[str, Any], problems: Sequence[Problem]) -> str:
    """`runs/<hash of the search identity and the problems>`: rerunning the same command
    resumes there, any other batch or config gets a directory of its own."""
    keys = [[p.id, p.problem, p.gold] for p in problems]
    return f"{DEFAULT_OUTPUT_ROOT}/{digest([dict(identity), keys])}"


def _flatten(prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}.{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(name, value))
        else:
            flat[name] = value
    return flat
