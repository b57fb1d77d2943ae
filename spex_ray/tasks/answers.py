"""Answer extraction, normalisation (for voting) and grading against a gold answer.

Extraction is linear in the text's length (one pass over its braces). Grading compares
normalised keys first; only answers whose keys differ go to math-verify, which runs in a
worker process under a time and memory bound (:mod:`spex_ray.tasks.verify`), so grading is
safe from any thread and no answer can stall it for more than a few seconds. Answers that
are too long, or whose powers and factorials would make sympy expand for ever, are compared
by key only (``MAX_VERIFY_CHARS``, :func:`_too_costly`) without asking the worker at all.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

# Answers that would only time out in math-verify are compared by key only: longer than
# this, or with exponents / factorials beyond these bounds.
MAX_VERIFY_CHARS = 200
MAX_ANSWER_CHARS = 1_000  # a longer "answer" is not one (and would make normalising it costly)
MAX_NUMERIC_EXPONENT = 10_000
MAX_SYMBOLIC_EXPONENT = 8

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_NON_SPACE_RE = re.compile(r"\S")
_INTEGER_RE = re.compile(r"-?\d+")
_BOX_BARE_RE = re.compile(r"\\boxed +([^\s${}]+)")
_PHRASE_RE = re.compile(r"(?i)\banswer\s*(?:is\b|:)\s*:?[ \t]*")
_HASH_RE = re.compile(r"####[ \t]*([^\n]*)")
_LEADING_NUMBER_RE = re.compile(r"^\s*(-?[\d,]*\.?\d+)\s+[A-Za-z]")
_NUMBER_RE = re.compile(r"^[+-]?(?:\d{1,3}(?:,\d{3})+|\d*)(?:\.\d*)?$")
_POWER_RE = re.compile(r"(?:\^|\*\*)\s*")
_BIG_FACTORIAL_RE = re.compile(r"(?:[)}\]]|\d{5,})\s*!")
_TEXT_WRAPPERS = ("text", "textbf", "textrm", "textit", "mathrm", "mathbf", "mbox", "boxed", "fbox")


# --------------------------------------------------------------------------- extraction


def extract_answer(text: str) -> str | None:
    """Extract the final answer from a model completion, or None when there is none.

    Tried in order: the last ``\\boxed{...}``/``\\fbox{...}`` (balanced braces); the last
    "The answer is X" / "answer: X"; the last GSM8K-style "#### X". An answer longer than
    MAX_ANSWER_CHARS does not count.
    """
    if not text:
        return None
    for finder in (_last_boxed, _last_phrase, _last_hash):
        answer = finder(text)
        if answer and len(answer) <= MAX_ANSWER_CHARS:
            return answer
    return None


def has_answer(text: str) -> bool:
    """True when :func:`extract_answer` finds an answer in ``text``."""
    return extract_answer(text) is not None


def _balanced_group(text: str, open_pos: int, open_char: str = "{", close_char: str = "}") -> str | None:
    """Content of the group opening at ``text[open_pos] == open_char``; None if unclosed."""
    depth = 0
    for pos in range(open_pos, len(text)):
        char = text[pos]
        if char == open_char:
            depth += 1
        elif char == close_char:
            depth -= 1
            if depth == 0:
                return text[open_pos + 1 : pos]
    return None


def _last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (balanced, not blank) or bare ``\\boxed x``."""
    groups = _closed_groups(text, {match.end() - 1: match.start() for match in _BOX_RE.finditer(text)})
    best: tuple[int, str] | None = None
    for start, open_pos, close_pos in sorted(groups, reverse=True):
        if _NON_SPACE_RE.search(text, open_pos + 1, close_pos):
            best = (start, text[open_pos + 1 : close_pos].strip())
            break
    for match in _BOX_BARE_RE.finditer(text):
        if best is None or match.start() > best[0]:
            best = (match.start(), match.group(1))
    return best[1] if best else None


def _closed_groups(text: str, opens: dict[int, int]) -> list[tuple[int, int, int]]:
    """(start, open, close) of each brace group opening at a position in `opens` (its value
    is the group's start, e.g. where its ``\\boxed`` begins) and closed in `text`: one pass."""
    if not opens:
        return []
    groups, stack = [], []
    for pos, char in enumerate(text):
        if char == "{":
            stack.append(pos)
        elif char == "}" and stack:
            open_pos = stack.pop()
            if open_pos in opens:
                groups.append((opens[open_pos], open_pos, pos))
    return groups


def _clean_phrase_value(value: str) -> str:
    value = value.strip().strip("*").strip()
    if value.startswith("$") and "$" in value[1:]:
        value = value[1 : value.index("$", 1)]
    value = value.strip().rstrip(".").strip().strip("$").strip().rstrip(".").strip()
    number = _LEADING_NUMBER_RE.match(value)
    return number.group(1) if number else value


def _last_phrase(text: str) -> str | None:
    # Matched prefix-only so that "Answer: the answer is 5" yields both (overlapping) candidates.
    for match in reversed(list(_PHRASE_RE.finditer(text))):
        line_end = text.find("\n", match.end())
        value = _clean_phrase_value(text[match.end() : line_end if line_end >= 0 else len(text)])
        if value:
            return value
    return None


def _last_hash(text: str) -> str | None:
    matches = list(_HASH_RE.finditer(text))
    for match in reversed(matches):
        value = match.group(1).strip().rstrip(".").strip().strip("$").strip()
        if value:
            return value
    return None


# --------------------------------------------------------------------------- normalisation


def answer_key(answer: str) -> str:
    """A normalised form of ``answer`` such that equal answers share a key (used for voting).

    Removes spaces, ``$``, trailing periods, ``\\text{}``-style wrappers, ``\\left``/``\\right``,
    degree signs and percent signs; "1,000" -> "1000", "72.0" -> "72", "0.50" -> "0.5";
    ``\\dfrac``/``\\tfrac``/``\\frac12`` -> ``\\frac{1}{2}`` and integer fractions -> "1/2".
    """
    key = answer.strip().replace("$", "")
    key = re.sub(r"\\(?:left|right)(?![A-Za-z])", "", key)
    key = re.sub(r"\\[!,;: ]", "", key).replace("~", "")
    key = _unwrap_commands(key, _TEXT_WRAPPERS)
    key = re.sub(r"\^\s*\{?\\circ\}?", "", key).replace("\\%", "").replace("%", "")
    key = _normalise_fracs(key)
    key = re.sub(r"\s+", "", key).rstrip(".")
    return _normalise_number(key)


def _unwrap_commands(text: str, names: tuple[str, ...]) -> str:
    """Replace ``\\name{content}`` by ``content`` for each command name (nested ones too)."""
    pattern = re.compile(r"\\(?:" + "|".join(names) + r")\s*\{")
    while (match := pattern.search(text)) is not None:
        content = _balanced_group(text, match.end() - 1)
        if content is None:
            break
        text = text[: match.start()] + content + text[match.end() + len(content) + 1 :]
    return text


def _normalise_fracs(text: str) -> str:
    text = re.sub(r"\\[dt]frac(?![A-Za-z])", r"\\frac", text)
    text = re.sub(r"\\frac\s*(\d)\s*(\d)", r"\\frac{\1}{\2}", text)
    text = re.sub(r"\\frac\s*\{([^{}]*)\}\s*(\d)", r"\\frac{\1}{\2}", text)
    text = re.sub(r"\\frac\s*(\d)\s*\{", r"\\frac{\1}{", text)
    return re.sub(r"\\frac\{\s*(-?\d+)\s*\}\{\s*(\d+)\s*\}", r"\1/\2", text)


def _normalise_number(text: str) -> str:
    if not _NUMBER_RE.match(text) or not any(c.isdigit() for c in text):
        return text
    try:
        value = Decimal(text.replace(",", ""))
    except InvalidOperation:
        return text
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


# --------------------------------------------------------------------------- grading


def answers_equivalent(a: str, b: str) -> bool:
    """True when two answers have the same :func:`answer_key` or math-verify finds them equal."""
    if not a or not b:
        return False
    if answer_key(a) == answer_key(b):
        return True
    return _math_verify_equal(a, b)


def is_correct(answer: str | None, gold: str | None) -> bool:
    """Grade ``answer`` against ``gold``: equal keys, else math-verify (bounded; an answer it
    cannot decide within the bounds is not correct). Safe to call from any thread."""
    if answer is None or gold is None or not answer.strip() or not gold.strip():
        return False
    return answer_key(answer) == answer_key(gold) or _math_verify_equal(gold, answer)


def _math_verify_equal(gold: str, answer: str) -> bool:
    if _too_costly(gold) or _too_costly(answer) or _distinct_integers(gold, answer):
        return False
    from spex_ray.tasks.verify import verify_equal

    return bool(verify_equal(gold, answer))


def _distinct_integers(gold: str, answer: str) -> bool:
    """Two integers with different keys: never equal, no need to ask math-verify."""
    keys = answer_key(gold), answer_key(answer)
    return all(_INTEGER_RE.fullmatch(key) for key in keys) and keys[0] != keys[1]


def math_verify_in_process(gold: str, answer: str) -> bool:
    """math-verify's verdict, in this process and unbounded: what the verify worker runs.

    MemoryError propagates (the worker reports it); any other failure is "not equal"."""
    try:
        gold_parsed, answer_parsed = _parse(gold), _parse(answer)
        if not gold_parsed or not answer_parsed:
            return False
        verify = _math_verify_module().verify
        return bool(verify(list(gold_parsed), list(answer_parsed), timeout_seconds=None))
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001 - an answer math-verify cannot read is not equal
        return False


def _too_costly(expr: str) -> bool:
    """Heuristic: could sympy hang on this (huge powers, towers, factorials, big expansions)?

    Without signal timeouts math-verify can run forever on e.g. ``10^{10^{10}}`` or
    ``(1+x+y+z)^{20}``, so such answers are compared by :func:`answer_key` only.
    """
    if len(expr) > MAX_VERIFY_CHARS or _BIG_FACTORIAL_RE.search(expr):
        return True
    if "binom" in expr and ("^" in expr or re.search(r"\d{6,}", expr)):
        return True
    for match in _POWER_RE.finditer(expr):
        exponent = _exponent_after(expr, match.end())
        if any(token in exponent for token in ("^", "**", "!", "\\binom")):
            return True
        if re.fullmatch(r"[+-]?\d+", exponent.strip()):
            numeric_base = expr[: match.start()].rstrip()[-1:].isdigit()
            limit = MAX_NUMERIC_EXPONENT if numeric_base else MAX_SYMBOLIC_EXPONENT
            if abs(int(exponent)) > limit:
                return True
    return False


def _exponent_after(expr: str, pos: int) -> str:
    """The exponent starting at ``pos``: a {...} or (...) group, a number, a command or one char."""
    if pos >= len(expr):
        return ""
    if expr[pos] in "{(":
        close = "}" if expr[pos] == "{" else ")"
        group = _balanced_group(expr, pos, expr[pos], close)
        return expr[pos + 1 :] if group is None else group
    token = re.match(r"[+-]?\d+|\\[A-Za-z]+|.", expr[pos:], re.S)
    return token.group(0) if token else ""


@lru_cache(maxsize=8192)
def _parse(expr: str) -> tuple[Any, ...]:
    """math-verify parse of a bare answer, wrapped in ``\\boxed{}`` so LaTeX extraction finds it."""
    wrapped = expr if "\\boxed" in expr else f"\\boxed{{{expr}}}"
    return tuple(_math_verify_module().parse(wrapped, parsing_timeout=None))


@lru_cache(maxsize=1)
def _math_verify_module() -> Any:
    """Import math_verify once, silencing its one-off "timeout disabled" warnings."""
    import math_verify
    from math_verify import grader, parser

    for module in (grader, parser):
        if hasattr(module, "TIMEOUT_WARNING_SHOWN"):
            module.TIMEOUT_WARNING_SHOWN = True
    return math_verify
