"""Progress of a batch: a bar on a terminal, one log line per problem elsewhere."""

from __future__ import annotations

import sys
import time

from spex_ray.io import Solution


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

    def update(self, solution: Solution) -> None:
        self.done += 1
        if solution.correct is not None:
            self.graded += 1
            self.correct += bool(solution.correct)
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(), refresh=False)
            self._bar.update(1)
        elif self.mode == "log":
            print(self._line(solution), file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def _postfix(self) -> str:
        return f"acc {self.correct}/{self.graded}" if self.graded else ""

    def _line(self, solution: Solution) -> str:
        elapsed = time.time() - self.started
        if solution.status != "ok":
            first_line = (solution.error or "").splitlines()[:1]
            outcome = f"ERROR {first_line[0] if first_line else ''}"
        else:
            mark = {True: "correct", False: "wrong", None: "ungraded"}[solution.correct]
            outcome = f"answer={solution.answer!r} ({mark}) {solution.latency_s:.1f}s"
        return f"[{self.done}/{self.total} {elapsed:.0f}s] {solution.id}: {outcome} {self._postfix()}"
