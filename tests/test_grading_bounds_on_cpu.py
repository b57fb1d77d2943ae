"""Grading is bounded: math-verify runs in a worker process under a time and memory bound,
answer extraction is linear, and nothing a model writes is executed."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from spex_ray.tasks import extract_answer, is_correct
from spex_ray.tasks import verify as verify_module
from spex_ray.tasks.verify import VerifierPool

EXPANSION = "(a+b+c+d+e+f+g+h+i+j)^{8}"  # sympy: 84 s unbounded


def _in_thread(fn, limit_s: float):
    """fn() in a worker thread (no signals there); its result, or an AssertionError past limit_s."""
    results: list = []
    thread = threading.Thread(target=lambda: results.append(fn()), daemon=True)
    thread.start()
    thread.join(timeout=limit_s)
    assert results, f"still running after {limit_s} s"
    return results[0]


@pytest.fixture(scope="module")
def pool():
    """The process's verifier pool for this module, with a short call timeout (0.5 s)."""
    pool = VerifierPool(size=1, timeout_s=0.5)
    saved, verify_module._pool = verify_module._pool, pool
    yield pool
    verify_module._pool = saved
    pool.close()


def test_an_expansion_that_stalls_sympy_is_cut_at_the_call_timeout(pool):
    assert pool.equal("1+x", "x+1") is True  # the worker is up
    began = time.monotonic()
    assert pool.equal("5", EXPANSION) is None  # undecided: the worker is killed
    assert time.monotonic() - began < 5
    assert pool.equal("\\frac{1}{2}", "0.5") is True  # a fresh worker answers the next call


def test_is_correct_on_a_stalling_answer_returns_from_any_thread(pool):
    assert _in_thread(lambda: is_correct(EXPANSION, "5"), 60) is False
    assert _in_thread(lambda: is_correct("x+1", "1+x"), 60) is True


def test_model_text_is_never_evaluated(pool, tmp_path):
    marker = tmp_path / "pwned"
    attacks = [
        f"__import__('os').system('touch {marker}')",
        f"\\boxed{{__import__('os').system('touch {marker}')}}",
        f"().__class__.__base__.__subclasses__() or open('{marker}', 'w')",
        f"1+1 if open('{marker}', 'w') else 2",  # math-verify reads the "1+1" in it, nothing more
    ]
    for attack in attacks:
        is_correct(attack, "2")
        pool.equal("2", attack)
    assert not marker.exists()


def test_extraction_is_linear_in_the_number_of_boxes():
    """The old extraction rescanned the rest of the text for every \\boxed{: minutes here."""
    began = time.monotonic()
    assert extract_answer("\\boxed{" * 50_000) is None  # none closed
    assert extract_answer("\\boxed{1} " * 50_000 + "\\boxed{ } \\boxed{2}") == "2"
    assert extract_answer("\\boxed{\\boxed{3}" + "{" * 50_000) == "3"
    assert extract_answer("the answer is \n\n" * 50_000 + "the answer is 4") == "4"
    assert time.monotonic() - began < 10


def test_an_answer_too_long_to_be_one_is_not_extracted():
    assert extract_answer("\\boxed{" + "1" * 1001 + "}") is None
    assert extract_answer("\\boxed{" + "1" * 1000 + "}") == "1" * 1000


def _running(pid: int) -> bool:
    """Whether process `pid` exists and has not exited (a zombie has)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_a_worker_busy_in_sympy_ends_when_its_parent_dies():
    parent = subprocess.Popen(
        [sys.executable, "-c", _BUSY_PARENT, EXPANSION],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    worker = int(parent.stdout.readline())
    time.sleep(0.5)  # the worker is expanding now
    assert _running(worker)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while _running(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(worker)


_BUSY_PARENT = """
import sys
from spex_ray.tasks.verify import _Worker
worker = _Worker()
print(worker.process.pid, flush=True)
worker.ask("5", sys.argv[1], 600)
"""
