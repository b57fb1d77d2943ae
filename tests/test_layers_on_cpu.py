"""The layering docs/architecture.md promises: the Ray-free packages import no Ray."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "spex_ray"
RAY_FREE = ["engines", "rewards", "tree", "tasks", "sim", "hardware", "report", "runtime"]
RAY_IMPORT = re.compile(r"^\s*(import ray\b|from ray\b)", re.M)


@pytest.mark.parametrize("package", RAY_FREE)
def test_ray_free_packages_import_no_ray(package):
    sources = sorted((PACKAGE / package).rglob("*.py"))
    assert sources, package
    offenders = [str(path.relative_to(PACKAGE)) for path in sources if RAY_IMPORT.search(path.read_text())]
    assert offenders == []


def test_the_architecture_page_names_files_that_exist():
    page = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"`((?:[a-z_]+/)*[a-z_]+\.py)`", page))
    missing = [
        name for name in named if not (PACKAGE / name).exists() and not (PACKAGE.parent / name).exists()
    ]
    assert named and missing == []
