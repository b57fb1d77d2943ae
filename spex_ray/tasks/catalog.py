"""The datasets known by name (gsm8k, math500, aime24, aime25) and where their files are looked for.

A named dataset is read from a local copy when one is present (``$SPEX_RAY_DATA/<file>`` or
``./data/<file>``), else from its Hugging Face hub copy (:mod:`spex_ray.tasks.hub`). Each one
is registered by name in ``registries.DATASETS``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from spex_ray.registries import DATASETS

DATA_ENV = "SPEX_RAY_DATA"

_ALIASES: dict[str, str] = {
    "gsm8k_test": "gsm8k",
    "math-500": "math500",
    "math_500": "math500",
    "aime2024": "aime24",
    "aime_2024": "aime24",
    "aime2025": "aime25",
    "aime_2025": "aime25",
}


@dataclass(frozen=True)
class NamedDataset:
    """A dataset known by name: the local file it may be saved as, and its hub copy."""

    name: str
    file: str  # looked for in $SPEX_RAY_DATA and ./data
    hub_id: str  # the Hugging Face hub dataset
    split: str
    hub_config: str | None = None
    fields: str = ""  # the fields its rows have (documentation and error messages)

    def local_candidates(self) -> list[Path]:
        """Where a local copy may be, in the order looked at."""
        return [directory / self.file for directory in data_dirs()]

    def local_file(self) -> Path | None:
        """The first local copy that exists, else None."""
        return next((path for path in self.local_candidates() if path.is_file()), None)

    def download_command(self) -> str:
        """A one-line shell command that saves the hub copy as :attr:`file` (JSON lines)."""
        config = f"{self.hub_config!r}, " if self.hub_config else ""
        load = f"load_dataset({self.hub_id!r}, {config}split={self.split!r})"
        return f'python -c "from datasets import load_dataset; {load}.to_json({self.file!r})"'


GSM8K = NamedDataset("gsm8k", "gsm8k_test.jsonl", "openai/gsm8k", "test", "main", "question, answer")
MATH500 = NamedDataset(
    "math500", "math500.jsonl", "HuggingFaceH4/MATH-500", "test", None,
    "problem, solution, answer, subject, level, unique_id",
)  # fmt: skip
AIME24 = NamedDataset(
    "aime24",
    "aime24.jsonl",
    "HuggingFaceH4/aime_2024",
    "train",
    None,
    "id, problem, solution, answer, url, year",
)
# The field names of this one are taken from its dataset viewer (problem, answer); the loader
# also accepts "question", so a mirror such as opencompass/AIME2025 saved as aime25.jsonl works.
AIME25 = NamedDataset("aime25", "aime25.jsonl", "yentinglin/aime_2025", "train", None, "problem, answer")


def data_dirs() -> list[Path]:
    """Directories searched for the local copy of a named dataset: ``$SPEX_RAY_DATA``, ``./data``."""
    dirs: list[Path] = []
    env = os.environ.get(DATA_ENV)
    if env:
        dirs.append(Path(env).expanduser())
    dirs.append(Path.cwd() / "data")
    return dirs


def named_dataset(name: str) -> NamedDataset | None:
    """The dataset registered as `name` (case-insensitive; aliases such as "math-500"), else None."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    return DATASETS.get(key) if key in DATASETS else None


def dataset_names() -> list[str]:
    """The registered dataset names."""
    return DATASETS.names()
