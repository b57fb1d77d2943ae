"""Math reasoning tasks: problem loading, prompts, answer extraction and grading.

This package imports neither Ray nor math-verify at import time.
"""

from __future__ import annotations

from spex_ray.tasks.answers import answer_key, answers_equivalent, extract_answer, has_answer, is_correct
from spex_ray.tasks.catalog import NamedDataset, dataset_names, named_dataset
from spex_ray.tasks.problems import (
    DatasetFieldError,
    Problem,
    check_fields,
    load_problems,
    problem_items,
    problems_from_items,
    resolve_dataset,
    unique_problems,
)
from spex_ray.tasks.prompts import STEP_DELIMITER, SYSTEM_PROMPT, build_messages

__all__ = [
    "STEP_DELIMITER",
    "SYSTEM_PROMPT",
    "DatasetFieldError",
    "NamedDataset",
    "Problem",
    "answer_key",
    "answers_equivalent",
    "build_messages",
    "check_fields",
    "dataset_names",
    "extract_answer",
    "has_answer",
    "is_correct",
    "load_problems",
    "named_dataset",
    "problem_items",
    "problems_from_items",
    "resolve_dataset",
    "unique_problems",
]
