"""The spex-ray command line: solve a dataset, or run a small demo on the embedded model."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from spex_ray import __version__
from spex_ray.config import Config, ConfigError
from spex_ray.errors import RunError

if TYPE_CHECKING:
    from spex_ray.api import RunResult

DEMO_PROBLEMS = [
    {
        "id": "demo-1",
        "problem": "Tom has 3 apples and buys 4 more. How many apples does he have?",
        "answer": "7",
    },
    {"id": "demo-2", "problem": "A box holds 6 eggs. How many eggs are in 5 boxes?", "answer": "30"},
]


SOLVE_EXAMPLES = """examples:
  spex-ray solve --dataset gsm8k --limit 10 --output runs/gsm8k
  spex-ray solve --problem "What is 17 * 23?" --set spex.speculate=true
  spex-ray solve --config configs/cpu_mcts.yaml --dataset math500 --limit 20
  spex-ray solve --config configs/sim_a6000.yaml --limit 8     # simulated GPU, no model

Every config key can be set with --set section.key=value; `spex-ray config show` prints them all.
An interrupted run resumes where it stopped when the same command is run again."""

MAIN_EPILOG = """examples:
  spex-ray demo                                   # 2 GSM8K problems on the embedded CPU model
  spex-ray solve --problem "What is 17 * 23?"
  spex-ray solve --help                           # options, defaults and more examples
  spex-ray report runs/demo                       # the demo's run as an HTML page
  spex-ray config show                            # every config key and its default"""

REPORT_EXAMPLES = """examples:
  spex-ray report runs/gsm8k                          # writes runs/gsm8k/report.html
  spex-ray report runs/spex --baseline runs/base --output spex_vs_base.html

A run still in progress is read from its journals (the rows finished so far)."""

CONFIG_EXAMPLES = """examples:
  spex-ray config show
  spex-ray config show --config configs/cpu_mcts.yaml --set search.width=8"""

INTERRUPTED_EXIT = 130  # the shell's code for a process ended by Ctrl-C (128 + SIGINT)
QUIET_RAY_LOGGERS = {  # logger: the level below which it is quiet without --verbose
    "ray._private.worker": logging.WARNING,  # "Started a local Ray instance ..." on every start
    "ray._private.authentication.authentication_token_setup": logging.ERROR,  # the token-auth notice
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return args.handler(args)
    except (ConfigError, FileNotFoundError, ValueError, ConnectionError, RunError) as exc:
        print(f"spex-ray: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # outside a solve (which says what it saved): e.g. calibrate
        print("\nspex-ray: interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' line breaks and shows every default an option has of its own
    (options that stand for a config key name the key and its default in their help)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, [], argparse.SUPPRESS) or "default" in text:
            return text
        return f"{text} (default: {action.default})"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spex-ray", description=__doc__, epilog=MAIN_EPILOG, formatter_class=_HelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"spex-ray {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="also show Ray's own log lines")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _solve_parser(commands)
    _config_parser(commands)
    _calibrate_parser(commands)
    _report_parser(commands)
    _demo_parser(commands)
    return parser


def _subparser(commands: Any, name: str, summary: str, epilog: str | None = None) -> argparse.ArgumentParser:
    return commands.add_parser(
        name, help=summary, description=summary, epilog=epilog, formatter_class=_HelpFormatter
    )


def _solve_parser(commands: Any) -> None:
    epilog = f"{_main_defaults()}\n\n{SOLVE_EXAMPLES}"
    solve = _subparser(commands, "solve", "solve a dataset with tree search", epilog)
    solve.add_argument(
        "--dataset", metavar="NAME|FILE", help="gsm8k | math500 | sim | a .jsonl/.parquet file (task.dataset)"
    )
    solve.add_argument("--problem", action="append", default=[], help="a problem text (repeatable)")
    solve.add_argument(
        "--limit", type=int, metavar="N", help="first N problems (task.limit; default 0 = all)"
    )
    solve.add_argument(
        "--offset", type=int, metavar="N", help="skip the first N problems (task.offset; default 0)"
    )
    _common(solve)
    solve.set_defaults(handler=_solve)


def _main_defaults() -> str:
    """The defaults a first run uses, from Config() itself."""
    config = Config()
    keys = {
        "policy.backend": config.policy.backend,
        "policy.model": config.policy.model,
        "search.algorithm": config.search.algorithm,
        "search.width": config.search.width,
        "spex.speculate": config.spex.speculate,
        "run.concurrency": config.run.concurrency,
    }
    return "defaults: " + ", ".join(f"{key}={value}" for key, value in keys.items())


def _config_parser(commands: Any) -> None:
    config = _subparser(commands, "config", "inspect the configuration", CONFIG_EXAMPLES)
    actions = config.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = _subparser(
        actions, "show", "print the effective config (defaults, then --config, then --set)", CONFIG_EXAMPLES
    )
    show.add_argument("--config", help="a YAML config (see configs/)")
    show.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. search.width=8"
    )
    show.set_defaults(handler=_config_show)


def _calibrate_parser(commands: Any) -> None:
    calibrate = _subparser(commands, "calibrate", "measure the engine's decode step time by batch size")
    calibrate.add_argument("--batch", type=int, nargs="+", default=[1, 2, 4, 8], help="batch sizes to time")
    calibrate.add_argument("--tokens", type=int, default=32, help="tokens decoded per request")
    calibrate.add_argument(
        "--tolerance", type=float, default=0.1, help="step-time growth still counted as flat"
    )
    calibrate.add_argument("--config", help="a YAML config (its policy section is used)")
    calibrate.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override")
    calibrate.set_defaults(handler=_calibrate)


def _report_parser(commands: Any) -> None:
    report = _subparser(
        commands, "report", "write a run's HTML report: timelines, trees, speedups", REPORT_EXAMPLES
    )
    report.add_argument("run_dir", metavar="RUN_DIR", help="the run's output directory (or URI)")
    report.add_argument(
        "--baseline", metavar="RUN_DIR", help="a run to compare with (speedup, accuracy, latency)"
    )
    report.add_argument(
        "--output", metavar="FILE.html", help="where to write it (default: RUN_DIR/report.html)"
    )
    report.set_defaults(handler=_report)


def _demo_parser(commands: Any) -> None:
    demo = _subparser(commands, "demo", "solve a few GSM8K problems on the embedded CPU model")
    demo.add_argument("--limit", type=int, default=2, help="problems to solve")
    _common(demo)
    demo.set_defaults(handler=_demo)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        help="a YAML config (see configs/); default: the built-in defaults (`spex-ray config show`)",
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. search.width=8"
    )
    parser.add_argument(
        "--output",
        help="output directory or URI (run.output; default runs/<hash of the problems and search config>)",
    )
    parser.add_argument(
        "--no-resume",
        action="store_true",
        help="start over: remove the output's earlier rows (by default rows of the same problems and search config are reused)",
    )


def _setup_logging(verbose: bool) -> None:
    """spex_ray's INFO lines ("loading model", "engines ready") through the progress console;
    Ray's start-up banner and token-auth notice only with --verbose."""
    from spex_ray.progress import ConsoleLogHandler

    package = logging.getLogger("spex_ray")
    if not any(isinstance(h, ConsoleLogHandler) for h in package.handlers):
        package.addHandler(ConsoleLogHandler())
    package.setLevel(logging.INFO)
    package.propagate = False
    for name, level in QUIET_RAY_LOGGERS.items():
        logging.getLogger(name).setLevel(logging.INFO if verbose else level)


def _overrides(args: argparse.Namespace) -> list[str]:
    items = []
    for name, key in (("dataset", "task.dataset"), ("limit", "task.limit"), ("offset", "task.offset")):
        value = getattr(args, name, None)
        if value is not None:
            items.append(f"{key}={value}")
    if args.output:
        items.append(f"run.output={args.output}")
    if args.no_resume:
        items.append("run.resume=false")
    return items + list(args.set)


def _solve(args: argparse.Namespace) -> int:
    config = Config.load(args.config, _overrides(args))
    problems = args.problem or None
    if problems is None and not config.task.dataset:
        raise ValueError("give --dataset (or task.dataset in the config) or --problem")
    return _run(problems, config)


def _demo(args: argparse.Namespace) -> int:
    from spex_ray.api import solve
    from spex_ray.tasks import load_problems, problems_from_items, resolve_dataset

    print(
        "spex-ray demo: tree search on the embedded SmolLM2-135M-Instruct, on this CPU. A 135M model "
        "rarely solves GSM8K, so expect wrong answers: the demo shows the search, the reasoning path "
        "it chose and the result files, not accuracy.",
        flush=True,
    )
    overrides = ["run.output=runs/demo", *_overrides(args)]
    config = Config.load(args.config, overrides)
    try:
        problems = load_problems(str(resolve_dataset("gsm8k")), limit=args.limit)
    except FileNotFoundError:
        problems = problems_from_items(DEMO_PROBLEMS[: args.limit])
    result = solve(problems, config)
    _print_paths(result)
    _print_summary(result, config)
    print(
        "\nReal models: configs/qwen25_math_prm.yaml, configs/llemma_7b.yaml, "
        "configs/r1_distill_confidence.yaml (GPUs, policy.backend=sglang); a simulated GPU on this "
        "machine: spex-ray solve --config configs/sim_h100.yaml --limit 8"
    )
    return 0 if all(s.status == "ok" for s in result.solutions) else 1


def _calibrate(args: argparse.Namespace) -> int:
    import asyncio

    from spex_ray.allocator.calibrate import calibrate

    config = Config.load(args.config, args.set)
    knee = asyncio.run(calibrate(config.policy, args.batch, args.tokens, args.tolerance))
    print("| batch | step ms | tokens/s |\n|---|---|---|")
    for batch, step in zip(knee.batch_sizes, knee.step_times, strict=True):
        print(f"| {batch} | {1000 * step:.1f} | {batch / step:.1f} |")
    print(f"\nknee: {knee.knee} (step time within {args.tolerance:.0%} of batch {knee.batch_sizes[0]})")
    print(f"use it with: --set policy.knee={knee.knee}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from spex_ray.report import write_report

    print(write_report(args.run_dir, args.baseline, args.output))
    return 0


def _config_show(args: argparse.Namespace) -> int:
    import yaml

    config = Config.load(args.config, args.set)
    print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
    return 0


def _run(problems, config: Config) -> int:
    from spex_ray.api import RunInterrupted, solve

    try:
        result = solve(problems, config)
    except RunInterrupted as stop:
        rerun = "rerun the same command" if config.run.resume else "rerun without --no-resume"
        print(f"\nspex-ray: interrupted; {stop.saved} rows saved; {rerun} to resume", file=sys.stderr)
        return INTERRUPTED_EXIT
    _print_summary(result, config)
    return 0 if all(s.status == "ok" for s in result.solutions) else 1


def _print_summary(result: RunResult, config: Config) -> None:
    time_scale = _modeled_time_scale(config)
    unit = "s" if time_scale is None else "s modeled"
    print()
    for s in result.solutions:
        if s.status == "error":
            print(f"{s.id}: ERROR {(s.error or '').splitlines()[0]}")
            continue
        verdict = {True: "correct", False: f"wrong, gold {s.gold}", None: "no gold"}[s.correct]
        cut = "; TIMEOUT: the best answer at run.query_timeout_s" if s.status == "timeout" else ""
        print(
            f"{s.id}: answer {s.answer!r} ({verdict}); {s.nodes} nodes, {s.tokens_main} tokens, "
            f"{s.latency_s:.1f}{unit}{cut}"
        )
    accuracy = result.accuracy
    acc_text = f"accuracy {accuracy:.0%}, " if accuracy is not None else ""
    count = len(result.solutions)
    span, busy = _engine_time(result)
    if time_scale is not None and span > 0:
        print(
            f"\n{count} problems: {acc_text}{60 * count / span:.2f} questions/min modeled "
            f"({span:.1f} s on the simulated engine's clock; {result.elapsed_s:.1f} s wall)"
        )
        if time_scale > 0 and busy < 0.9 * span:
            print(
                f"note: orchestration overhead dominates: the simulated engine idled {1 - busy / span:.0%} "
                f"of the modeled time waiting on Ray and Python (idle wall time counts 1/time_scale = "
                f"{1 / time_scale:.0f}x); raise policy.sim.time_scale (1 = real time) or use "
                "spex_ray.sim.simulate(), which models the same searches without it"
            )
    else:
        print(f"\n{count} problems: {acc_text}{result.questions_per_minute:.2f} questions/min")
        if span > 0 and busy < 0.5 * result.elapsed_s:
            print(
                f"note: the engine generated for {busy:.1f} s of the {result.elapsed_s:.1f} s wall; "
                "starting Ray and loading the model took most of the rest"
            )
    if result.reused:
        print(f"{result.reused} reused from {result.output_dir} (solved earlier; not in questions/min)")
    print(f"results: {result.results_path}")
    print(f"trace:   {result.trace_path}")
    print(f"report:  {result.report_command}")


def _print_paths(result: RunResult, width: int = 160) -> None:
    """Each solved problem and the reasoning path the search chose, with its step rewards."""
    for s in result.solutions:
        if s.status != "ok":
            continue
        print(f"\n{s.id}: {_one_line(s.problem, width)}")
        if not s.path:
            print(f"  no path reached an answer ({s.nodes} nodes explored)")
        for number, (step, reward) in enumerate(zip(s.path, s.step_rewards, strict=True), start=1):
            print(f"  {number}. [{reward:.2f}] {_one_line(step, width)}")


def _one_line(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def _modeled_time_scale(config: Config) -> float | None:
    """policy.sim.time_scale when the run's engine keeps a modeled clock, else None."""
    from spex_ray.sim.settings import SimSettings
    from spex_ray.solution import MODELED_CLOCK_BACKENDS

    policy = config.policy
    return SimSettings.of(policy).time_scale if policy.backend in MODELED_CLOCK_BACKENDS else None


def _engine_time(result: RunResult) -> tuple[float, float]:
    """(span, busy) seconds of the run's requests on the engine clock: first enqueue to last end,
    and the time some request was running."""
    from spex_ray.io import read_trace
    from spex_ray.report.summary import busy_seconds
    from spex_ray.solution import engine_span

    try:
        trace = read_trace(result.output_dir)  # a directory or a URI
    except (FileNotFoundError, OSError):
        return 0.0, 0.0
    return engine_span(trace), busy_seconds((row.start_time, row.end_time) for row in trace)


if __name__ == "__main__":
    sys.exit(main())
