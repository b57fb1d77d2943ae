"""Progress of a batch: a bar on a terminal, one log line per problem elsewhere."""

from __future__ import annotations

import sys
import time
from typing import Any


class Progress:
    """Reports finished problems. mode: auto (bar on a tty, else log) | bar | log | off."""

    def __init__(self, total: int, mode: str = "auto", already_done: int = 0) -> None:
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "log"
        self.mode = mode
        self.total = total
        self.done = already_done
        self.correct = 0
        self.graded = 0
        self.started = time.time()
        self._bar = None
        if mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=already_done, unit="q", desc="solving", file=sys.stderr)

    def update(self, row: dict[str, Any]) -> None:
        self.done += 1
        if row.get("correct") is not None:
            self.graded += 1
            self.correct += bool(row["correct"])
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(), refresh=False)
            self._bar.update(1)
        elif self.mode == "log":
            print(self._line(row), file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def _postfix(self) -> str:
        return f"acc {self.correct}/{self.graded}" if self.graded else ""

    def _line(self, row: dict[str, Any]) -> str:
        elapsed = time.time() - self.started
        if row.get("status") != "ok":
            first_line = str(row.get("error") or "").splitlines()[:1]
            outcome = f"ERROR {first_line[0] if first_line else ''}"
        else:
            mark = {True: "correct", False: "wrong", None: "ungraded"}[row.get("correct")]
            outcome = f"answer={row.get('answer')!r} ({mark}) {row.get('latency_s', 0.0):.1f}s"
        return f"[{self.done}/{self.total} {elapsed:.0f}s] {row.get('id')}: {outcome} {self._postfix()}"
