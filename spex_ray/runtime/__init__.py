"""The per-query runtime, Ray-free: one set of parts for the Ray path and the simulation.

- host.py: EngineHost, one engine and its duties (lazy start, MAIN reports, progress);
  the EngineActor is EngineHost made remote, the simulation uses it as is.
- router.py: Router, which engine serves a query (affinity, then least loaded), and the
  engines' health (serving, draining, down; down engines are probed back).
- client.py: RoutedClient, a query's EngineClient: re-issues a MAIN request whose engine
  failed, with the same id and seed, on another engine.
- query.py: QueryRuntime, a query end to end: route, budget, solve, release.

The two paths differ only in the clock (wall or virtual) and the transport (an actor
proxy or the object itself).
"""

from spex_ray.runtime.client import RoutedClient
from spex_ray.runtime.host import EngineHost
from spex_ray.runtime.query import BudgetSource, QueryRuntime
from spex_ray.runtime.router import EngineState, EngineUnavailable, NoEngine, Router

__all__ = [
    "BudgetSource",
    "EngineHost",
    "EngineState",
    "EngineUnavailable",
    "NoEngine",
    "QueryRuntime",
    "RoutedClient",
    "Router",
]
