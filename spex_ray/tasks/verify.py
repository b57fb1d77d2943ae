"""math-verify under a time and memory bound, in worker processes.

sympy can spend minutes and gigabytes on a short answer such as
``(a+b+c+d+e+f+g+h+i+j)^{8}``, and math-verify's own timeouts use SIGALRM, which works only
in a process's main thread (not in a Ray actor's event loop thread, not in a thread pool).
So the comparison runs in a child process (``python -m spex_ray.tasks.verify``) that the
caller waits on for at most ``CALL_TIMEOUT_S``: a call that takes longer kills the child
(the next call starts a new one), and the child's address space is capped at
``MEMORY_LIMIT_BYTES``, so a runaway expansion fails there with MemoryError. Either way the
answer is "undecided" (None) and the caller falls back to comparing normalised keys.

The child reads one JSON request per line on stdin and writes one JSON reply per line on
stdout; it exits when its stdin closes or its parent is gone, so it never outlives the
process that started it.
Nothing a model wrote is executed: the child only parses and compares (see
docs/security.md).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

CALL_TIMEOUT_S = 3.0  # one comparison; longer and the worker is killed
START_TIMEOUT_S = 60.0  # a new worker importing math-verify and sympy
MEMORY_LIMIT_BYTES = 1 << 30  # the worker's address space (RLIMIT_AS)
POOL_SIZE = 2  # worker processes per process that grades (started on first use)
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the directory that holds spex_ray/


class VerifyFailed(RuntimeError):
    """The worker timed out, died or could not start; the comparison is undecided."""


class _Worker:
    """One child process and its pipes."""

    def __init__(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PACKAGE_ROOT), env.get("PYTHONPATH", "")]))
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "spex_ray.tasks.verify"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=env,
            )
        except OSError as exc:
            raise VerifyFailed(f"could not start the math-verify worker ({exc})") from exc
        try:
            self._read(START_TIMEOUT_S)  # {"ready": true} once math-verify is imported
        except VerifyFailed:
            self.kill()
            raise

    def ask(self, gold: str, answer: str, timeout_s: float) -> bool:
        stdin: IO[bytes] = self.process.stdin  # type: ignore[assignment]
        try:
            stdin.write((json.dumps({"gold": gold, "answer": answer}) + "\n").encode())
            stdin.flush()
        except OSError as exc:
            raise VerifyFailed(f"the math-verify worker is gone ({exc})") from exc
        reply = self._read(timeout_s)
        if "error" in reply:
            raise VerifyFailed(reply["error"])
        return bool(reply["equal"])

    def _read(self, timeout_s: float) -> dict[str, Any]:
        stdout: IO[bytes] = self.process.stdout  # type: ignore[assignment]
        ready, _, _ = select.select([stdout], [], [], timeout_s)
        if not ready:
            raise VerifyFailed(f"math-verify took longer than {timeout_s:g} s")
        line = stdout.readline()
        if not line:
            raise VerifyFailed(f"the math-verify worker exited (code {self.process.wait()})")
        try:
            return json.loads(line)
        except json.JSONDecodeError as exc:
            raise VerifyFailed(f"the math-verify worker wrote {line[:80]!r}") from exc

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()


class VerifierPool:
    """Up to `size` math-verify workers shared by the threads of one process."""

    def __init__(self, size: int = POOL_SIZE, timeout_s: float = CALL_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self._slots: queue.LifoQueue[_Worker | None] = queue.LifoQueue()
        for _ in range(size):
            self._slots.put(None)  # a worker starts when a call first needs this slot

    def equal(self, gold: str, answer: str) -> bool | None:
        """Whether math-verify finds `answer` equal to `gold`; None when it could not decide
        within the bounds (the worker is then replaced)."""
        worker = self._slots.get()
        try:
            if worker is None or not worker.alive():
                worker = _Worker()
            return worker.ask(gold, answer, self.timeout_s)
        except VerifyFailed as exc:
            if worker is not None:
                worker.kill()
                worker = None
            log.warning("grading %s against %s undecided: %s", _short(answer), _short(gold), exc)
            return None
        finally:
            self._slots.put(worker)

    def close(self) -> None:
        """Stop the workers that are idle (the others stop when their stdin closes)."""
        while True:
            try:
                worker = self._slots.get_nowait()
            except queue.Empty:
                return
            if worker is not None:
                worker.kill()


_pool: VerifierPool | None = None
_pool_lock = threading.Lock()


def verify_equal(gold: str, answer: str) -> bool | None:
    """math-verify's verdict on `answer` against `gold` within the bounds (None: undecided)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = VerifierPool()
            atexit.register(_pool.close)
    return _pool.equal(gold, answer)


def _short(text: str, chars: int = 60) -> str:
    return repr(text if len(text) <= chars else text[: chars - 3] + "...")


# ----------------------------------------------------------------------------- the worker


def _limit_memory(limit: int) -> None:
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


def _exit_with_parent(every_s: float = 1.0) -> None:
    """End this worker when the process that started it is gone, even in the middle of a
    comparison (the stdin EOF that ends the loop is read only between comparisons)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _serve() -> None:
    """The worker's loop: a JSON request per stdin line, a JSON reply per stdout line."""
    _limit_memory(MEMORY_LIMIT_BYTES)
    _exit_with_parent()
    from spex_ray.tasks.answers import math_verify_in_process

    started = time.monotonic()
    out, sys.stdout = sys.stdout, sys.stderr  # the replies alone on stdout, whatever prints
    math_verify_in_process("1", "1")  # import math-verify and sympy before saying ready
    out.write(json.dumps({"ready": True, "import_s": time.monotonic() - started}) + "\n")
    out.flush()
    for line in sys.stdin:
        try:
            request = json.loads(line)
            reply: dict[str, Any] = {"equal": math_verify_in_process(request["gold"], request["answer"])}
        except MemoryError:
            reply = {"error": f"math-verify needed more than {MEMORY_LIMIT_BYTES >> 20} MiB"}
        except Exception as exc:  # noqa: BLE001 - reported to the caller as undecided
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    _serve()
