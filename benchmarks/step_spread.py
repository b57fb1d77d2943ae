"""The spread of reasoning-step lengths in reference solutions (the sim's step log-sd).

    SPEX_RAY_DATA=/work/shared/data .venv/bin/python benchmarks/step_spread.py

A REBASE barrier waits for the longest sibling step, so the log-sd of step lengths sets
what speculation can gain. The sim's default (spex_ray/sim/workload.py) is set between
what this prints for the reference solutions of MATH500 (steps split at the search's
step delimiter, a blank line) and GSM8K (one step per line): the log-sd over all steps
and the mean log-sd within one solution (solutions of 3 or more steps). Lengths are in
characters: a log-sd does not depend on the unit, and a constant number of characters per
token leaves it as it is in tokens.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Iterable
from pathlib import Path


def log_sd(lengths: Iterable[int]) -> float:
    return statistics.pstdev([math.log(n) for n in lengths if n > 0])


def steps_of(text: str, delimiter: str) -> list[str]:
    return [step.strip() for step in text.split(delimiter) if step.strip() and not step.startswith("####")]


def report(name: str, solutions: list[str], delimiter: str) -> None:
    steps = [steps_of(s, delimiter) for s in solutions]
    lengths = [len(step) for solution in steps for step in solution]
    within = [log_sd(len(step) for step in solution) for solution in steps if len(solution) >= 3]
    print(
        f"{name}: {len(lengths)} steps of {len(solutions)} solutions, median {statistics.median(lengths):.0f} "
        f"chars; log-sd {log_sd(lengths):.2f} over all steps, {statistics.fmean(within):.2f} within a "
        f"solution ({len(within)} solutions of >= 3 steps)"
    )


def main() -> None:
    data = Path(os.environ.get("SPEX_RAY_DATA", "data"))
    math500 = [json.loads(line)["solution"] for line in (data / "math500.jsonl").open()]
    gsm8k = [json.loads(line)["answer"] for line in (data / "gsm8k_test.jsonl").open()]
    report("MATH500 (blank-line steps)", math500, "\n\n")
    report("GSM8K test (one step per line)", gsm8k, "\n")


if __name__ == "__main__":
    main()
