"""Loading math problems (a named dataset, a generated one, or any jsonl/parquet file) into
:class:`Problem` records.

Named datasets (gsm8k, math500, aime24, aime25; :mod:`spex_ray.tasks.catalog`) are read from a
local copy when one is present, else from the Hugging Face hub (:mod:`spex_ray.tasks.hub`).
The fields are checked as the dataset loads: a dataset in which no row has a problem field
fails at once (:class:`DatasetFieldError`, naming the ``task.problem_field`` setting), while
one malformed row among good ones becomes a problem with ``error`` set, so a run reports it
and carries on with the good rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spex_ray.registries import GENERATED
from spex_ray.tasks.catalog import data_dirs, dataset_names, named_dataset
from spex_ray.tasks.files import BadRow, read_rows

_PROBLEM_FIELDS = ("problem", "question")
_ANSWER_FIELDS = ("answer",)
_ID_FIELDS = ("unique_id", "id")
_META_FIELDS = ("subject", "level")
_FIELDS_SHOWN = 12  # field names an error message lists at most
# Input sizes a row may have: a longer problem, gold answer or id fails its row at load.
# (A problem within the bound may still be longer than the model's context: the engine
# refuses its first request, before generating anything, and the row fails with that.)
MAX_PROBLEM_CHARS = 1_000_000
MAX_GOLD_CHARS = 10_000
MAX_ID_CHARS = 1_000


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


class DatasetFieldError(ValueError):
    """No row of a dataset has the field a problem (or an explicitly named field) is read from."""


class _RowError(Exception):
    """Raised internally while converting one row; turned into an error Problem."""


# --------------------------------------------------------------------------- dataset paths


def resolve_dataset(name_or_path: str) -> Path:
    """The local file of a named dataset ("gsm8k", "math500", "aime24", "aime25") or a file path.

    Named datasets are looked for in ``$SPEX_RAY_DATA`` and ``./data``; a relative path that
    does not exist is also looked up there. Raises FileNotFoundError listing every place
    looked at (:func:`load_problems` then reads a named dataset from the hub instead).
    """
    spec = named_dataset(name_or_path)
    if spec is not None:
        candidates = spec.local_candidates()
    else:
        path = Path(name_or_path).expanduser()
        candidates = [path]
        if not path.is_absolute():
            candidates += [d / path for d in data_dirs()]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(c) for c in _dedupe(candidates))
    names = ", ".join(sorted([*dataset_names(), *GENERATED.names()]))
    raise FileNotFoundError(
        f"dataset {name_or_path!r} not found (looked for {looked}); named datasets: {names}"
    )


def _dedupe(paths: Iterable[Path]) -> list[Path]:
    seen: dict[str, Path] = {}
    for p in paths:
        seen.setdefault(str(p), p)
    return list(seen.values())


# --------------------------------------------------------------------------- loading


def load_problems(
    source: str,
    problem_field: str = "",
    answer_field: str = "",
    id_field: str = "",
    limit: int | None = None,
    offset: int = 0,
    seed: int = 0,
) -> list[Problem]:
    """Load problems from a named dataset (a local copy, else the Hugging Face hub), a
    generated one such as ``sim`` (which takes ``seed``), or a .jsonl/.json/.parquet file.

    ``offset`` rows are skipped, then at most ``limit`` rows are kept (None = all; 0 is
    rejected). Field names default to auto-detection (see :func:`problems_from_items`).
    Raises :class:`DatasetFieldError` when no row has the problem field (or an explicitly
    named field), and ``hub.DatasetUnavailable`` when a named dataset cannot be had.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, or None for all rows (got {limit})")
    if offset < 0:
        raise ValueError(f"offset must be >= 0 (got {offset})")
    rows = _source_rows(source, limit, offset, seed)
    check_fields(rows, source, problem_field, answer_field, id_field)
    return problems_from_items(rows, problem_field, answer_field, id_field, start_index=offset)


def _source_rows(source: str, limit: int | None, offset: int, seed: int) -> list[Any]:
    if source in GENERATED:
        return GENERATED.build(source, limit, offset, seed)
    spec = named_dataset(source)
    if spec is None:
        return read_rows(resolve_dataset(source), limit, offset)
    local = spec.local_file()
    if local is not None:
        return read_rows(local, limit, offset)
    from spex_ray.tasks.hub import load_hub_rows

    return load_hub_rows(spec, limit, offset)


# --------------------------------------------------------------------------- field check


def check_fields(
    rows: list[Any], source: str, problem_field: str = "", answer_field: str = "", id_field: str = ""
) -> None:
    """Raise :class:`DatasetFieldError` when the fields a problem is read from are in no row.

    Only dict rows count (string rows are problems themselves; undecodable rows fail alone).
    The message lists the fields the rows do have and the ``task.*_field`` setting to use.
    """
    records = [row for row in rows if isinstance(row, dict)]
    if not records:
        return
    wanted = [("problem_field", problem_field, (problem_field,) if problem_field else _PROBLEM_FIELDS)]
    wanted += [
        (key, name, (name,)) for key, name in (("answer_field", answer_field), ("id_field", id_field)) if name
    ]
    for key, explicit, names in wanted:
        if not any(name in row for row in records for name in names):
            raise DatasetFieldError(_missing_field_message(source, records, key, explicit, names))


def _missing_field_message(
    source: str, records: list[dict], key: str, explicit: str, names: tuple[str, ...]
) -> str:
    present = _field_names(records)
    shown = ", ".join(present[:_FIELDS_SHOWN]) + (", ..." if len(present) > _FIELDS_SHOWN else "")
    looked = f"the field {explicit!r} named by task.{key}" if explicit else " or ".join(map(repr, names))
    example = _text_field(records[0]) if key == "problem_field" else None
    setting = f"--set task.{key}={example or '<field>'}"
    answer_hint = ""
    if key == "problem_field" and not any(name in row for row in records for name in _ANSWER_FIELDS):
        answer_hint = " (and --set task.answer_field=<field> for the gold answer)"
    return (
        f"dataset {source!r}: no row has {looked}; its rows have the fields {shown or '(none)'}; "
        f"name the field to read with {setting}{answer_hint}"
    )


def _field_names(records: list[dict]) -> list[str]:
    names: dict[str, None] = {}
    for row in records:
        names.update(dict.fromkeys(str(key) for key in row))
    return list(names)


def _text_field(row: dict) -> str | None:
    """The first field of `row` holding non-empty text, ids and answers aside: the likely problem."""
    skip = (*_ID_FIELDS, *_ANSWER_FIELDS)
    return next((str(k) for k, v in row.items() if k not in skip and isinstance(v, str) and v.strip()), None)


# --------------------------------------------------------------------------- rows -> problems


def problem_items(problems: Any) -> list[Any]:
    """The items of a batch given as one text, one row or one Problem, or as an iterable of them.

    A bare string is one problem (not one per character), a dict one row.
    """
    if isinstance(problems, str | bytes | dict | Problem):
        return [problems]
    return list(problems)


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
    A malformed, oversized or duplicate row yields a Problem whose ``error`` names the row
    number (see :func:`unique_problems` for the ids of such rows).
    """
    problems: list[Problem] = []
    rows = []
    for i, item in enumerate(problem_items(items)):
        index = start_index + i
        try:
            problem = _problem_from_item(item, index, problem_field, answer_field, id_field)
        except _RowError as exc:
            problem = Problem(id=str(index), problem="", error=f"row {index}: {exc}")
        problems.append(problem)
        rows.append(index)
    return unique_problems(problems, rows)


def unique_problems(problems: Sequence[Problem], rows: Sequence[int] | None = None) -> list[Problem]:
    """The problems with unique ids. A later row with the id of an earlier well-formed one
    becomes an error row ("row 7: duplicate id 'x' (first on row 3)"), and every error row
    gets an id no other row has (its row number, else ``row-<n>``), so each row of the batch
    keeps a result of its own. `rows` are the row numbers (default: the positions)."""
    problems = list(problems)
    rows = list(rows) if rows is not None else list(range(len(problems)))
    first: dict[str, int] = {}
    for position, problem in enumerate(problems):
        if not problem.ok:
            continue
        earlier = first.setdefault(problem.id, rows[position])
        if earlier != rows[position]:
            problems[position] = dataclasses.replace(
                problem,
                id=str(rows[position]),
                error=f"row {rows[position]}: duplicate id {problem.id!r} (first on row {earlier})",
            )
    taken = {problem.id for problem in problems if problem.ok}
    for position, problem in enumerate(problems):
        if not problem.ok and problem.id in taken:
            problems[position] = dataclasses.replace(problem, id=_free_id(problem.id, taken))
        taken.add(problems[position].id)
    return problems


def _free_id(wanted: str, taken: set[str]) -> str:
    """`wanted`, or `row-<wanted>`, `row-<wanted>-2`, ... : the first that no row has."""
    if wanted not in taken:
        return wanted
    candidate, n = f"row-{wanted}", 1
    while candidate in taken:
        n += 1
        candidate = f"row-{wanted}-{n}"
    return candidate


def _problem_from_item(
    item: Any, index: int, problem_field: str, answer_field: str, id_field: str
) -> Problem:
    if isinstance(item, BadRow):
        raise _RowError(item.message)
    if isinstance(item, str):
        if not item.strip():
            raise _RowError("empty problem text")
        return Problem(id=str(index), problem=_bounded("problem text", item, MAX_PROBLEM_CHARS))
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
    return _bounded(f"field {name!r}", value, MAX_PROBLEM_CHARS)


def _bounded(what: str, text: str, limit: int) -> str:
    if len(text) > limit:
        raise _RowError(f"{what} is {len(text):,} characters long; at most {limit:,} are accepted")
    return text


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
    return _gold_from_text(_bounded(f"field {name!r}", value, MAX_GOLD_CHARS))


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
    return _bounded(f"field {name!r}", text, MAX_ID_CHARS)
