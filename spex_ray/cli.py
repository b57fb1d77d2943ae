"""The spex-ray command line: solve a dataset, or run a small demo on the embedded model."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from spex_ray.config import Config, ConfigError

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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ConfigError, FileNotFoundError, ValueError, ConnectionError) as exc:
        print(f"spex-ray: error: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spex-ray", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    solve = commands.add_parser("solve", help="solve a dataset with tree search")
    solve.add_argument("--dataset", help="gsm8k | math500 | a .jsonl/.parquet file (task.dataset)")
    solve.add_argument("--problem", action="append", default=[], help="a problem text (repeatable)")
    solve.add_argument("--limit", type=int, help="first N problems (task.limit)")
    solve.add_argument("--offset", type=int, help="skip the first N problems (task.offset)")
    _common(solve)
    solve.set_defaults(handler=_solve)

    calibrate = commands.add_parser("calibrate", help="measure the engine's decode step time by batch size")
    calibrate.add_argument("--batch", type=int, nargs="+", default=[1, 2, 4, 8], help="batch sizes to time")
    calibrate.add_argument("--tokens", type=int, default=32, help="tokens decoded per request")
    calibrate.add_argument(
        "--tolerance", type=float, default=0.1, help="step-time growth still counted as flat"
    )
    calibrate.add_argument("--config", help="a YAML config (its policy section is used)")
    calibrate.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    calibrate.set_defaults(handler=_calibrate)

    demo = commands.add_parser("demo", help="solve a few GSM8K problems on the embedded CPU model")
    demo.add_argument("--limit", type=int, default=2, help="problems to solve (default 2)")
    _common(demo)
    demo.set_defaults(handler=_demo)
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="a YAML config (see configs/)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. search.width=8"
    )
    parser.add_argument("--output", help="output directory (run.output)")
    parser.add_argument(
        "--no-resume",
        action="store_true",
        help="start over: remove the output's earlier rows (by default rows of the same problems and search config are reused)",
    )


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
    from spex_ray.tasks import load_problems, problems_from_items, resolve_dataset

    overrides = ["run.output=runs/demo", *_overrides(args)]
    config = Config.load(args.config, overrides)
    try:
        problems = load_problems(str(resolve_dataset("gsm8k")), limit=args.limit)
    except FileNotFoundError:
        problems = problems_from_items(DEMO_PROBLEMS[: args.limit])
    return _run(problems, config)


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


def _run(problems, config: Config) -> int:
    from spex_ray.api import solve

    result = solve(problems, config)
    _print_summary(result)
    return 0 if all(s.status == "ok" for s in result.solutions) else 1


def _print_summary(result: RunResult) -> None:
    print()
    for s in result.solutions:
        if s.status != "ok":
            print(f"{s.id}: ERROR {(s.error or '').splitlines()[0]}")
            continue
        verdict = {True: "correct", False: f"wrong, gold {s.gold}", None: "no gold"}[s.correct]
        print(
            f"{s.id}: answer {s.answer!r} ({verdict}); {s.nodes} nodes, {s.tokens_main} tokens, {s.latency_s:.1f}s"
        )
    accuracy = result.accuracy
    acc_text = f"accuracy {accuracy:.0%}, " if accuracy is not None else ""
    print(f"\n{len(result.solutions)} problems: {acc_text}{result.questions_per_minute:.2f} questions/min")
    print(f"results: {result.results_path}")
    print(f"trace:   {result.trace_path}")


if __name__ == "__main__":
    sys.exit(main())
