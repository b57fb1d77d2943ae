"""Reading dataset rows from .jsonl/.json (JSON lines or one JSON array) and .parquet files.

A line that is not valid JSON becomes a :class:`BadRow`, so that one row fails and the rest
are read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")


@dataclass(frozen=True)
class BadRow:
    """Placeholder for a row that could not even be decoded (e.g. invalid JSON)."""

    message: str


def read_rows(path: Path, limit: int | None, offset: int) -> list[Any]:
    """Rows offset..offset+limit (limit None: to the end) of a .jsonl/.json/.ndjson/.parquet file."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _read_parquet(path, limit, offset)
    if suffix in JSON_SUFFIXES:
        return _read_json_lines(path, limit, offset)
    raise ValueError(f"unsupported dataset format {path.suffix!r} for {path} (use .jsonl, .json or .parquet)")


def _window(items: list[Any], limit: int | None, offset: int) -> list[Any]:
    return items[offset:] if limit is None else items[offset : offset + limit]


def _read_parquet(path: Path, limit: int | None, offset: int) -> list[Any]:
    import pyarrow.parquet as pq

    return pq.read_table(path).slice(offset, limit).to_pylist()


def _read_json_lines(path: Path, limit: int | None, offset: int) -> list[Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        return _window(_read_json_array(text), limit, offset)
    numbered = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    return [_decode_line(line, line_no) for line_no, line in _window(numbered, limit, offset)]


def _read_json_array(text: str) -> list[Any]:
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as exc:
        return [BadRow(f"invalid JSON array file: {exc}")]
    return rows if isinstance(rows, list) else [BadRow("JSON file is not a list of rows")]


def _decode_line(line: str, line_no: int) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        return BadRow(f"invalid JSON on line {line_no}: {exc.msg} at column {exc.colno}")
