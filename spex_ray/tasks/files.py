"""Reading dataset rows from .jsonl/.json (JSON lines or one JSON array) and .parquet files.

A line that is not valid JSON, or not valid UTF-8, becomes a :class:`BadRow` naming its line,
so that one row fails and the rest are read. A file that cannot be read at all is a
:class:`DatasetReadError` naming the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class BadRow:
    """Placeholder for a row that could not even be decoded (e.g. invalid JSON)."""

    message: str


class DatasetReadError(ValueError):
    """A dataset file that exists but cannot be read (permissions, I/O, not a valid file)."""


def read_rows(path: Path, limit: int | None, offset: int) -> list[Any]:
    """Rows offset..offset+limit (limit None: to the end) of a .jsonl/.json/.ndjson/.parquet file."""
    suffix = path.suffix.lower()
    if suffix not in (".parquet", *JSON_SUFFIXES):
        raise ValueError(
            f"unsupported dataset format {path.suffix!r} for {path} (use .jsonl, .json or .parquet)"
        )
    if suffix == ".parquet":
        return _read_parquet(path, limit, offset)
    try:
        return _read_json_lines(path, limit, offset)
    except OSError as exc:
        raise DatasetReadError(f"dataset {str(path)!r} cannot be read: {exc.strerror or exc}") from None


def _window(items: list[Any], limit: int | None, offset: int) -> list[Any]:
    return items[offset:] if limit is None else items[offset : offset + limit]


def _read_parquet(path: Path, limit: int | None, offset: int) -> list[Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise DatasetReadError(f"dataset {str(path)!r} is not a readable Parquet file: {exc}") from None
    return table.slice(offset, limit).to_pylist()


def _read_json_lines(path: Path, limit: int | None, offset: int) -> list[Any]:
    data = path.read_bytes().removeprefix(_BOM)
    if path.suffix.lower() == ".json" and data.lstrip().startswith(b"["):
        return _window(_read_json_array(path, data), limit, offset)
    # bytes.splitlines splits on \n, \r and \r\n only: a JSON string may hold U+2028 and the like
    numbered = [(n, line) for n, line in enumerate(data.splitlines(), start=1) if line.strip()]
    return [_decode_line(line, line_no) for line_no, line in _window(numbered, limit, offset)]


def _read_json_array(path: Path, data: bytes) -> list[Any]:
    try:
        rows = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DatasetReadError(f"dataset {str(path)!r}: invalid UTF-8 on line {line}") from None
    except json.JSONDecodeError as exc:
        return [BadRow(f"invalid JSON array file: {exc}")]
    return rows if isinstance(rows, list) else [BadRow("JSON file is not a list of rows")]


def _decode_line(line: bytes, line_no: int) -> Any:
    try:
        return json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return BadRow(
            f"invalid UTF-8 on line {line_no}: byte 0x{line[exc.start]:02x} at column {exc.start + 1}"
        )
    except json.JSONDecodeError as exc:
        return BadRow(f"invalid JSON on line {line_no}: {exc.msg} at column {exc.colno}")
