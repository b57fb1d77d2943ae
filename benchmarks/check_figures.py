"""Rerun the simulator figures and compare them with the committed results, row by row.

    .venv/bin/python benchmarks/check_figures.py                # every figure but scale and the slow ones (~3 min)
    .venv/bin/python benchmarks/check_figures.py ablation oracle
    .venv/bin/python benchmarks/check_figures.py algorithms     # a slow one (about an hour here)

Each figure's command is read from its section of BENCHMARKS.md (`<!-- sim:NAME -->`), run
through its script (sim_suite.py or sim_algorithms.py) with the writing of results replaced
by a comparison: every column of
benchmarks/results/NAME.parquet must come out equal, bit for bit, in every row. Nothing is
written. A refactor that must not change behaviour passes this; a model change shows which
cells moved. `scale` is skipped: its Ray columns are measured wall-clock figures.
"""

from __future__ import annotations

import importlib
import math
import re
import shlex
import sys
import time
from typing import Any

import pyarrow.parquet as pq
import sim_common

SKIPPED = {"scale"}
SLOW = {"algorithms"}  # checked only when named
SCRIPTS = ("sim_suite", "sim_algorithms")


def figure_commands() -> dict[str, tuple[str, list[str]]]:
    """NAME -> (script module, its arguments) as recorded in BENCHMARKS.md for that figure."""
    text = sim_common.BENCHMARKS_MD.read_text()
    sections = re.findall(r"<!-- sim:([\w-]+) -->\n###[^\n]*\n\n```\n([^\n]+)\n```", text)
    commands = {}
    for name, command in sections:
        words = shlex.split(command)
        script = next(i for i, word in enumerate(words) if word.endswith(".py") and "benchmarks/" in word)
        commands[name] = (words[script].rpartition("/")[2].removesuffix(".py"), words[script + 1 :])
    return commands


def differences(rows: list[dict[str, Any]], committed: list[dict[str, Any]]) -> list[str]:
    """Where `rows` differ from the committed rows, over the committed columns."""
    if len(rows) != len(committed):
        return [f"{len(rows)} rows, {len(committed)} committed"]
    found = []
    for i, (new, old) in enumerate(zip(rows, committed, strict=True)):
        for column, value in old.items():
            if not _same(new.get(column), value):
                found.append(f"row {i} {column}: {new.get(column)!r} (committed {value!r})")
    return found


def _same(a: Any, b: Any) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def check(name: str, script: str, arguments: list[str]) -> bool:
    if script not in SCRIPTS:
        raise SystemExit(f"{name}: its command runs {script}.py, which has no figures to check")
    module = importlib.import_module(script)
    saved: dict[str, list[dict[str, Any]]] = {}
    module.save = lambda figure, rows, **_: saved.setdefault(figure, [dict(r) for r in rows])
    sys.argv = [f"{script}.py", *arguments]
    started = time.time()
    module.main()
    committed = pq.read_table(sim_common.RESULTS / f"{name}.parquet").to_pylist()
    found = differences(saved[name], committed)
    print(f"{name}: {'same' if not found else 'DIFFERENT'} ({time.time() - started:.0f} s)", flush=True)
    for line in found[:20]:
        print(f"  {line}")
    return not found


def main() -> int:
    commands = figure_commands()
    names = sys.argv[1:] or [name for name in commands if name not in SKIPPED | SLOW]
    unknown = [name for name in names if name not in commands or name in SKIPPED]
    if unknown:
        print(f"no checkable figure {', '.join(unknown)}; figures: {', '.join(sorted(commands))}")
        return 2
    results = [check(name, *commands[name]) for name in names]
    print("all figures reproduce" if all(results) else "some figures differ")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
