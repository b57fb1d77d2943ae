"""solve(): run a batch of problems through tree search on Ray and collect the results.

Starts Ray (or joins the cluster in RAY_ADDRESS / run.ray_address), creates the engine
actors and tree actors, admits up to run.concurrency queries at a time, journals every
finished row as it arrives (a crash loses no finished result; a rerun resumes), and
returns the Solutions.
"""

from __future__ import annotations

import logging
import os
import shlex
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import AuthenticationError

from spex_ray.actors.fleet import EngineFleet, kill
from spex_ray.actors.pool import remove_groups
from spex_ray.actors.reward import start_reward_actors
from spex_ray.actors.tree import TreeActor
from spex_ray.batch import BatchResult
from spex_ray.config import Config
from spex_ray.errors import RunError
from spex_ray.io import (
    CONFIG_FILE,
    ERROR_TAIL_CHARS,
    RESULTS_FILE,
    TRACE_FILE,
    RunWriter,
    Solution,
    TraceRow,
    exception_message,
    output_file,
)
from spex_ray.outputs import OutputError, is_uri
from spex_ray.progress import CONSOLE, Progress
from spex_ray.resume import default_output, search_identity
from spex_ray.tasks import Problem, load_problems, problem_items, problems_from_items, unique_problems

log = logging.getLogger(__name__)
STATUS_EVERY_S = 1.0  # the live status line's refresh while no query finishes
TREE_RESTARTS = 3  # a tree actor is restarted, and a query on it admitted again, this often
TREE_RETRY_S = 2.0  # a query lost with its tree actor is admitted again after attempt x this

JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # set by Ray in the entrypoint of a submitted job


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during solve(): every finished row is saved in `output`; a rerun resumes."""

    def __init__(self, output: Path | str, saved: int) -> None:
        super().__init__(f"interrupted; {saved} rows saved in {output}")
        self.output = output
        self.saved = saved


class ClusterConnectError(ConnectionError):
    """This process cannot join the Ray cluster; the message says what to set."""


_TOKEN_HINT = (
    "give the cluster's token as ~/.ray/auth_token, RAY_AUTH_TOKEN_PATH=<file> or "
    "RAY_AUTH_TOKEN=<token> (`ray get-auth-token` on the head prints it)"
)


@dataclass
class RunResult(BatchResult):
    """The solutions of a batch run on Ray (input order) and where its files are.

    `reused` of the solutions were resumed from the output, not solved by this run; the
    throughput counts only the others.
    """

    output_dir: Path | str  # a local directory, or the URI the files were copied to
    elapsed_s: float  # wall seconds of solve(), starting Ray and the actors included
    engine_stats: list[dict[str, Any]] = field(default_factory=list)
    allocator_stats: dict[str, Any] = field(default_factory=dict)  # BudgetAllocator.snapshot()
    reused: int = 0

    @property
    def duration_s(self) -> float:
        return self.elapsed_s

    @property
    def solved_count(self) -> int:
        return len(self.solutions) - self.reused

    @property
    def results_path(self) -> Path | str:
        return output_file(self.output_dir, RESULTS_FILE)

    @property
    def trace_path(self) -> Path | str:
        return output_file(self.output_dir, TRACE_FILE)

    @property
    def report_command(self) -> str:
        """The command that writes this run's HTML report (spex_ray/report/)."""
        return f"spex-ray report {shlex.quote(str(self.output_dir))}"


def solve(
    problems: Iterable[str | dict | Problem] | None = None,
    config: Config | str | Path | None = None,
    overrides: Sequence[str] = (),
) -> RunResult:
    """Solve `problems` (texts, dict rows, or Problems; None = config.task.dataset).

    `config` is a Config, a YAML path, or None for the defaults (the embedded CPU model);
    `overrides` are `section.key=value` strings applied on top.
    """
    config = _load_config(config, overrides)
    batch = _problems(problems, config)
    identity = search_identity(config)
    writer = RunWriter(_output(config, identity, batch), resume=config.run.resume, identity=identity)
    started = time.time()
    try:
        reused = writer.reusable_ids(batch)
        writer.write_text(CONFIG_FILE, _config_yaml(config))
        todo = [p for p in batch if p.id not in reused]
        stats, allocator_stats = [], {}
        if todo:  # a batch resumed whole needs no Ray
            _ensure_ray(config.run.ray_address)
            stats, allocator_stats = _run_batch(todo, config, writer, already_done=len(reused))
    except KeyboardInterrupt as exc:
        raise RunInterrupted(writer.output, len(writer.solutions())) from exc
    finally:
        writer.finalize()
        writer.close()
    finished = {solution.id: solution for solution in writer.solutions()}
    solutions = [finished[p.id] for p in batch if p.id in finished]
    elapsed = time.time() - started
    result = RunResult(solutions, writer.output, elapsed, stats, allocator_stats, reused=len(reused))
    if config.run.progress != "off":
        CONSOLE.print(f"spex-ray: see the run: {result.report_command}")
    return result


def _load_config(config: Config | str | Path | None, overrides: Sequence[str]) -> Config:
    if isinstance(config, Config):
        for item in overrides:
            config.set(item)
        return config.validate()
    return Config.load(config, overrides)


def _problems(problems: Iterable[str | dict | Problem] | None, config: Config) -> list[Problem]:
    task = config.task
    if problems is None:
        if not task.dataset:
            raise ValueError("no problems given and task.dataset is empty")
        return load_problems(
            task.dataset,
            task.problem_field,
            task.answer_field,
            task.id_field,
            task.limit,
            task.offset,
            seed=config.run.seed,
        )
    items = problem_items(problems)  # a bare string is one problem
    if all(isinstance(item, Problem) for item in items):
        return unique_problems(items)
    return problems_from_items(items, task.problem_field, task.answer_field, task.id_field)


def _config_yaml(config: Config) -> str:
    import yaml

    return yaml.safe_dump(config.to_dict(), sort_keys=False)


def _output(config: Config, identity: dict[str, Any], batch: list[Problem]) -> str:
    """run.output, or the default directory of this batch and search identity; a relative
    path is refused under `ray job submit` (it would land in the job's temporary working
    directory, removed with the job)."""
    output = config.run.output
    if _in_submitted_job() and not is_uri(output) and not Path(output).is_absolute():
        given = f"run.output {output!r} is relative" if output else "run.output is not set"
        raise OutputError(
            f"{given}: under `ray job submit` it would land in the job's temporary working "
            "directory; give --output an absolute path (on the head node or a shared "
            "filesystem) or a URI (s3://..., gs://...)"
        )
    return output or default_output(identity, batch)


def _in_submitted_job() -> bool:
    """Whether this driver runs as the entrypoint of a `ray job submit` job."""
    return JOB_CONFIG_ENV in os.environ


def _ensure_ray(address: str) -> None:
    """Join the cluster in `address` or RAY_ADDRESS (e.g. under `ray job submit`), else start one.

    A cluster this process cannot join is a ClusterConnectError saying what to set when the
    cause may be token authentication (Ray 2.60's default for a cluster that has a token).
    """
    if ray.is_initialized():
        return
    where = address or os.environ.get("RAY_ADDRESS", "")
    log.info("connecting to Ray ..." if where else "starting Ray ...")
    try:
        # actors' warnings (and prints) reach this driver's stderr, deduplicated across actors
        ray.init(address=address or None, log_to_driver=True)
    except AuthenticationError as exc:
        raise ClusterConnectError(
            f"the Ray cluster at {where} refused this client ({exc.message}): {_TOKEN_HINT}"
        ) from None
    except ConnectionError as exc:
        if os.environ.get("RAY_AUTH_MODE", "").lower() == "token" or not where:
            raise
        raise ClusterConnectError(
            f"{exc}; if that cluster uses token authentication, set RAY_AUTH_MODE=token and {_TOKEN_HINT}"
        ) from None


def _run_batch(
    todo: list[Problem], config: Config, writer: RunWriter, already_done: int
) -> tuple[list[dict], dict[str, Any]]:
    """Run the batch; returns the engines' stats and the allocator's snapshot ({} without one)."""
    progress = Progress(already_done + len(todo), config.run.progress, already_done)
    log.info("loading model %s ...", _model_text(config.policy))
    allocator = _start_allocator(config)  # first: engines register with it as they start
    fleet = EngineFleet(config, allocator)
    trees: list[Any] = []
    rewards, reward_groups = [], []
    try:
        fleet.start(len(todo))
        chat = _chat_template(fleet, len(todo))
        # reward actors after the policy engines: SGLang sizes its KV cache from the free memory
        rewards, reward_groups = start_reward_actors(config.reward)
        trees = [
            TreeActor.options(max_restarts=TREE_RESTARTS).remote(config, chat, allocator, rewards)
            for _ in range(config.run.tree_actors)
        ]
        fleet.attach(trees)
        _stream(todo, trees, config.run.concurrency, writer, progress, fleet)
        return fleet.shutdown(), _allocator_snapshot(allocator)
    finally:
        progress.close()
        fleet.shutdown()
        _shutdown([*rewards, *trees])
        remove_groups(reward_groups)


def _model_text(policy: Any) -> str:
    """ "embedded (hf, 1 engine; its first use fetches it from PyPI, up to a minute)"."""
    from spex_ray.engines.models import EMBEDDED, embedded_model_dir

    engines = f"{policy.num_engines} engine{'s' if policy.num_engines > 1 else ''}"
    if policy.max_engines:
        most = "one per GPU" if policy.max_engines < 0 else str(policy.max_engines)
        engines = f"{policy.min_engines} to {most} engines, elastic"
    first_use = policy.backend == "hf" and (policy.model or EMBEDDED) == EMBEDDED
    if first_use and not embedded_model_dir(policy.cache_dir).is_dir():
        engines += "; its first use fetches it from PyPI, up to a minute"
    return f"{policy.model} ({policy.backend}, {engines})"


def _chat_template(fleet: EngineFleet, queries: int) -> Any:
    """The engines' chat template, from the first engine that serves (an elastic pool may
    have to wait for a node to join first)."""
    deadline = time.time() + fleet.policy.start_timeout_s
    while not fleet.serving():
        if time.time() > deadline:
            raise RunError(
                f"no engine served within policy.start_timeout_s={fleet.policy.start_timeout_s:.0f}s"
            )
        time.sleep(0.2)
        fleet.tick(time.time(), queries)
    first = next(iter(fleet.serving().values()))
    return ray.get(first.handle.chat_template.remote())


def _start_allocator(config: Config) -> Any:
    """The cluster's BudgetAllocator when speculation shares a budget; None otherwise."""
    spex = config.spex
    if not spex.speculate or spex.allocator == "off":
        return None
    from spex_ray.allocator.budget import get_or_create_allocator

    return get_or_create_allocator(spex.allocator, spex.tau, config.policy.max_batch_size)


def _allocator_snapshot(allocator: Any) -> dict[str, Any]:
    if allocator is None:
        return {}
    try:
        return ray.get(allocator.snapshot.remote(), timeout=30)
    except Exception as exc:  # noqa: BLE001 - a lost allocator loses its stats, not the run
        log.warning("allocator stats unavailable: %s", exc)
        return {}


@dataclass
class _InFlight:
    problem: Problem
    attempt: int
    tree: int  # index of the tree actor solving it


def _stream(
    todo: list[Problem],
    trees: list[Any],
    concurrency: int,
    writer: RunWriter,
    progress: Progress,
    fleet: EngineFleet,
) -> None:
    """Keep `concurrency` queries in flight; journal each result the moment it lands; keep
    the fleet in shape and refresh the status line about every STATUS_EVERY_S while waiting.
    A query whose tree actor died is admitted again (Ray restarts the actor; the fleet
    tells the new one its engines), up to TREE_RESTARTS times."""
    pending: deque[tuple[Problem, int]] = deque((problem, 1) for problem in todo)
    retries: list[tuple[float, Problem, int]] = []  # (not before, problem, attempt): lost with a tree
    in_flight: dict[Any, _InFlight] = {}
    admitted = 0
    while pending or in_flight or retries:
        now = time.time()
        for due in [r for r in retries if r[0] <= now]:
            retries.remove(due)
            pending.appendleft(due[1:])
        while pending and len(in_flight) < concurrency:
            problem, attempt = pending.popleft()
            admitted += 1
            index = admitted % len(trees)
            in_flight[trees[index].solve.remote(problem, admitted)] = _InFlight(problem, attempt, index)
        ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=STATUS_EVERY_S) if in_flight else ([], [])
        for ref in ready:
            job = in_flight.pop(ref)
            try:
                solution, trace = _collect(ref, job.problem)
            except ray.exceptions.RayActorError as exc:
                if job.attempt > TREE_RESTARTS:
                    solution, trace = (
                        Solution.failed(job.problem, exception_message(exc, tail=ERROR_TAIL_CHARS)),
                        [],
                    )
                else:  # after a pause, so a restarting actor is back and the attempt is not wasted
                    log.warning(
                        "tree actor lost with %s (%s): solving it again", job.problem.id, type(exc).__name__
                    )
                    fleet.attach_tree(trees[job.tree])
                    retries.append((time.time() + TREE_RETRY_S * job.attempt, job.problem, job.attempt + 1))
                    continue
            solution.attempts = job.attempt
            writer.write(solution, trace)
            progress.update(solution)
        if not in_flight:
            time.sleep(0.05)
        now = time.time()
        fleet.tick(now, len(pending) + len(in_flight) + len(retries))
        progress.set_live(len(in_flight), fleet.monitor.poll(now))
        progress.tick(now)


def _collect(ref: Any, problem: Problem) -> tuple[Solution, list[TraceRow]]:
    """The result of a finished query; a failed actor call becomes that problem's error row,
    except a lost tree actor (RayActorError), which the caller admits again."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayActorError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure fails this row only
        log.warning("problem %s failed: %s", problem.id, exc)
        return Solution.failed(problem, exception_message(exc, tail=ERROR_TAIL_CHARS)), []


def _shutdown(actors: list[Any]) -> None:
    """Close the reward and tree actors (a dead one is no error) and kill them."""
    try:
        ray.get([a.close.remote() for a in actors], timeout=60)
    except Exception as exc:  # noqa: BLE001 - shutting down anyway
        log.debug("closing actors: %s", exc)
    for actor in actors:
        kill(actor)
