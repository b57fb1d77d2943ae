"""Loading math problems (GSM8K, MATH-500 or any jsonl/parquet file) into :class:`Problem` records.

Malformed rows never raise: they become problems with ``error`` set, so a run can report them
and carry on with the good rows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spex_ray.registries import GENERATED

DATASET_FILES: dict[str, str] = {
    "gsm8k": "gsm8k_test.jsonl",
    "math500": "math500.jsonl",
}
_ALIASES: dict[str, str] = {"gsm8k_test": "gsm8k", "math-500": "math500", "math_500": "math500"}

_PROBLEM_FIELDS = ("problem", "question")
_ANSWER_FIELDS = ("answer",)
_ID_FIELDS = ("unique_id", "id")
_META_FIELDS = ("subject", "level")
_JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")


@dataclass
class Problem:
    """One problem to solve; ``error`` is set (and ``problem`` may be empty) for a malformed row."""

    id: str
    problem: str
    gold: str | None = None
    meta: dict = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the row was well formed."""
        return self.error is None


@dataclass(frozen=True)
class _BadRow:
    """Placeholder for a row that could not even be decoded (e.g. invalid JSON)."""

    message: str


class _RowError(Exception):
    """Raised internally while converting one row; turned into an error Problem."""


# --------------------------------------------------------------------------- dataset paths


def data_dirs() -> list[Path]:
    """Directories searched for named datasets, in order."""
    dirs: list[Path] = []
    env = os.environ.get("SPEX_RAY_DATA")
    if env:
        dirs.append(Path(env).expanduser())
    repo_root = Path(__file__).resolve().parents[2]
    dirs.append(repo_root.parent / "shared" / "data")
    cwd = Path.cwd()
    dirs.append(cwd.parent / "shared" / "data")
    dirs.append(cwd / "data")
    return dirs


def resolve_dataset(name_or_path: str) -> Path:
    """Resolve a dataset name ("gsm8k", "math500") or a file path to an existing file.

    Named datasets are searched in ``$SPEX_RAY_DATA``, ``<repo>/../shared/data``,
    ``./../shared/data`` and ``./data``. A relative path that does not exist is also looked up
    in those directories. Raises FileNotFoundError listing every place searched.
    """
    key = name_or_path.strip().lower()
    key = _ALIASES.get(key, key)
    if key in DATASET_FILES:
        candidates = [d / DATASET_FILES[key] for d in data_dirs()]
    else:
        path = Path(name_or_path).expanduser()
        candidates = [path]
        if not path.is_absolute():
            candidates += [d / path for d in data_dirs()]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    searched = "\n  ".join(str(c) for c in _dedupe(candidates))
    raise FileNotFoundError(f"dataset {name_or_path!r} not found; searched:\n  {searched}")


def _dedupe(paths: Iterable[Path]) -> list[Path]:
    seen: dict[str, Path] = {}
    for p in paths:
        seen.setdefault(str(p), p)
    return list(seen.values())


# --------------------------------------------------------------------------- reading rows


def load_problems(
    source: str,
    problem_field: str = "",
    answer_field: str = "",
    id_field: str = "",
    limit: int = 0,
    offset: int = 0,
    seed: int = 0,
) -> list[Problem]:
    """Load problems from a named dataset (a file one, or a generated one such as ``sim``,
    which takes ``seed``) or a .jsonl/.json (JSON lines) or .parquet file.

    ``offset`` rows are skipped, then at most ``limit`` rows are kept (0 = all). Field names
    default to auto-detection (see :func:`problems_from_items`).
    """
    if limit < 0 or offset < 0:
        raise ValueError(f"limit and offset must be >= 0 (got limit={limit}, offset={offset})")
    if source in GENERATED:
        rows = GENERATED.build(source, limit, offset, seed)
    else:
        rows = _read_rows(resolve_dataset(source), limit=limit, offset=offset)
    return problems_from_items(rows, problem_field, answer_field, id_field, start_index=offset)


def _read_rows(path: Path, limit: int, offset: int) -> list[Any]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _read_parquet(path, limit, offset)
    if suffix in _JSON_SUFFIXES:
        return _read_json_lines(path, limit, offset)
    raise ValueError(f"unsupported dataset format {path.suffix!r} for {path} (use .jsonl, .json or .parquet)")


def _read_parquet(path: Path, limit: int, offset: int) -> list[Any]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    length = limit if limit else None
    return table.slice(offset, length).to_pylist()


def _read_json_lines(path: Path, limit: int, offset: int) -> list[Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        rows = _read_json_array(text)
        return rows[offset : offset + limit] if limit else rows[offset:]
    numbered = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    selected = numbered[offset : offset + limit] if limit else numbered[offset:]
    return [_decode_line(line, line_no) for line_no, line in selected]


def _read_json_array(text: str) -> list[Any]:
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as exc:
        return [_BadRow(f"invalid JSON array file: {exc}")]
    return rows if isinstance(rows, list) else [_BadRow("JSON file is not a list of rows")]


def _decode_line(line: str, line_no: int) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        return _BadRow(f"invalid JSON on line {line_no}: {exc.msg} at column {exc.colno}")


# --------------------------------------------------------------------------- rows -> problems


def problems_from_items(
    items: Iterable[Any],
    problem_field: str = "",
    answer_field: str = "",
    id_field: str = "",
    start_index: int = 0,
) -> list[Problem]:
    """Convert rows (problem strings or dicts) into problems; never raises on a bad row.

    Auto-detected fields: problem from "problem" or "question", gold from "answer" (GSM8K
    "... #### 72" answers keep only the number, commas removed), id from "unique_id" or "id",
    else the row index. Explicitly named fields must be present. Meta keeps subject/level.
    A malformed or duplicate row yields a Problem whose ``error`` names the row number.
    """
    problems: list[Problem] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        index = start_index + i
        try:
            problem = _problem_from_item(item, index, problem_field, answer_field, id_field)
            if problem.id in seen:
                raise _RowError(f"duplicate id {problem.id!r}")
        except _RowError as exc:
            problem = Problem(id=str(index), problem="", error=f"row {index}: {exc}")
        else:
            seen.add(problem.id)
        problems.append(problem)
    return problems


def _problem_from_item(
    item: Any, index: int, problem_field: str, answer_field: str, id_field: str
) -> Problem:
    if isinstance(item, _BadRow):
        raise _RowError(item.message)
    if isinstance(item, str):
        if not item.strip():
            raise _RowError("empty problem text")
        return Problem(id=str(index), problem=item)
    if not isinstance(item, dict):
        raise _RowError(f"expected a JSON object or a string, got {type(item).__name__}")
    return Problem(
        id=_row_id(item, index, id_field),
        problem=_row_problem(item, problem_field),
        gold=_row_gold(item, answer_field),
        meta={k: item[k] for k in _META_FIELDS if item.get(k) is not None},
    )


def _lookup(row: dict, explicit: str, auto: tuple[str, ...], required: bool) -> tuple[str, Any]:
    """Return (field name, value) of the first present field; ("", None) when absent and optional."""
    names = (explicit,) if explicit else auto
    for name in names:
        if name in row and row[name] is not None:
            return name, row[name]
    if required or explicit:
        looked = f" (looked for {', '.join(names)})" if len(names) > 1 else ""
        raise _RowError(f"missing field {names[0]!r}{looked}")
    return "", None


def _row_problem(row: dict, problem_field: str) -> str:
    name, value = _lookup(row, problem_field, _PROBLEM_FIELDS, required=True)
    if not isinstance(value, str):
        raise _RowError(f"field {name!r} is not a string (got {type(value).__name__})")
    if not value.strip():
        raise _RowError(f"field {name!r} is empty")
    return value


def _row_gold(row: dict, answer_field: str) -> str | None:
    name, value = _lookup(row, answer_field, _ANSWER_FIELDS, required=False)
    if value is None:
        return None
    if isinstance(value, bool):
        raise _RowError(f"field {name!r} has unsupported type bool")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if not isinstance(value, str):
        raise _RowError(f"field {name!r} has unsupported type {type(value).__name__}")
    return _gold_from_text(value)


def _gold_from_text(text: str) -> str | None:
    """GSM8K "reasoning\\n#### 1,234" -> "1234"; other answers (LaTeX) are kept, stripped."""
    if "####" in text:
        text = text.rsplit("####", 1)[1].replace(",", "")
    text = text.strip()
    return text or None


def _row_id(row: dict, index: int, id_field: str) -> str:
    name, value = _lookup(row, id_field, _ID_FIELDS, required=False)
    if value is None:
        return str(index)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _RowError(f"field {name!r} has unsupported type {type(value).__name__}")
    text = str(value).strip()
    if not text:
        if id_field:
            raise _RowError(f"field {name!r} is empty")
        return str(index)
    return text
