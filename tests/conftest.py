"""Shared fixtures: one Ray session for every integration test."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/fake_engine.py
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
_DEV_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # the dev machine's GSM8K, MATH-500
if _DEV_DATA.is_dir():
    os.environ.setdefault("SPEX_RAY_DATA", str(_DEV_DATA))


def pytest_collection_modifyitems(config, items):
    import importlib.util

    has_cuda = False
    if importlib.util.find_spec("torch") is not None:
        import torch

        has_cuda = torch.cuda.is_available()
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the whole session (ray.init takes ~5 s here)."""
    import ray

    ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
