"""CPU-only tests for spex_ray.tasks: loading, prompts, answer extraction and grading."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import spex_ray.tasks.answers as answers_module
from spex_ray.tasks import (
    STEP_DELIMITER,
    SYSTEM_PROMPT,
    Problem,
    answer_key,
    answers_equivalent,
    build_messages,
    extract_answer,
    has_answer,
    is_correct,
    load_problems,
    problems_from_items,
    resolve_dataset,
)

REAL_GSM8K = Path("/work/shared/data/gsm8k_test.jsonl")


def _write_jsonl(path: Path, rows: list) -> Path:
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------- imports / prompts


def test_import_is_light() -> None:
    code = "import sys, spex_ray.tasks; print('math_verify' in sys.modules, 'datasets' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False False"
    package_dir = Path(answers_module.__file__).parent
    for source in package_dir.glob("*.py"):
        assert not re.search(r"^\s*(import|from) ray\b", source.read_text(), re.M), source


def test_build_messages() -> None:
    messages = build_messages("  What is 1+1?  ")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == SYSTEM_PROMPT
    assert messages[1]["content"] == "What is 1+1?"
    assert "\\boxed{" in SYSTEM_PROMPT
    assert STEP_DELIMITER == "\n\n"
    assert "blank line" in SYSTEM_PROMPT


def test_system_prompt_names_the_step_delimiter() -> None:
    assert "a line break" in build_messages("x", "\n")[0]["content"]
    assert "'<step>'" in build_messages("x", "<step>")[0]["content"]
    assert "blank line" not in build_messages("x", "<step>")[0]["content"]


# --------------------------------------------------------------------------- extraction


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("So the result is \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
        ("First \\boxed{1}, then \\boxed{2}.", "2"),
        ("\\fbox{x^{2}}", "x^{2}"),
        ("Step one.\n\nThe answer is 42.", "42"),
        ("The answer is $18$.", "18"),
        ("The answer is 18 dollars.", "18"),
        ("Final Answer: The final answer is $7$. I hope it is correct.", "7"),
        ("answer: 3\nThe answer is 4", "4"),
        ("reasoning\n#### 1,234", "1,234"),
        ("The answer is \\boxed{5}. The answer is 6.", "5"),
        ("no answer here", None),
        ("", None),
        ("\\boxed{unclosed", None),
    ],
)
def test_extract_answer(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected
    assert has_answer(text) is (expected is not None)


# --------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize(
    ("answer", "key"),
    [
        ("1,000", "1000"),
        ("72.0", "72"),
        ("0.50", "0.5"),
        ("$5.$", "5"),
        ("\\text{(A)}", "(A)"),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"),
        ("90^\\circ", "90"),
    ],
)
def test_answer_key(answer: str, key: str) -> None:
    assert answer_key(answer) == key


def test_answer_key_fraction_forms_agree() -> None:
    keys = {answer_key(a) for a in ("\\frac{1}{2}", "\\dfrac{1}{2}", "\\tfrac12", "\\frac12", "1/2")}
    assert len(keys) == 1


def test_answers_equivalent() -> None:
    assert answers_equivalent("0.5", "\\frac{1}{2}")
    assert answers_equivalent("1,000", "1000")
    assert not answers_equivalent("3", "4")
    assert not answers_equivalent("", "")


# --------------------------------------------------------------------------- grading


@pytest.mark.parametrize(
    ("answer", "gold", "expected"),
    [
        ("72.0", "72", True),
        ("72", "72", True),
        ("\\frac12", "0.5", True),
        ("0.5", "\\frac{1}{2}", True),
        ("1,000", "1000", True),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
        ("x+1", "1+x", True),
        ("71", "72", False),
        ("\\frac{1}{3}", "0.5", False),
        ("banana", "72", False),
        (None, "72", False),
        ("72", None, False),
        ("", "72", False),
    ],
)
def test_is_correct(answer: str | None, gold: str | None, expected: bool) -> None:
    assert is_correct(answer, gold) is expected


def test_is_correct_in_worker_thread() -> None:
    results: dict[str, object] = {}

    def work() -> None:
        try:
            results["value"] = [is_correct("\\dfrac{3}{4}", "0.75"), is_correct("5", "6")]
        except BaseException as exc:  # pragma: no cover - reported below
            results["error"] = exc

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=60)
    assert "error" not in results, results.get("error")
    assert results["value"] == [True, False]


# --------------------------------------------------------------------------- loading


def test_load_gsm8k_style_jsonl(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "g.jsonl",
        [
            {"question": "Q0?", "answer": "work\n#### 1,234"},
            {"question": "Q1?", "answer": "more work\n####  72 "},
        ],
    )
    problems = load_problems(str(path))
    assert [p.id for p in problems] == ["0", "1"]
    assert [p.gold for p in problems] == ["1234", "72"]
    assert problems[0].problem == "Q0?"
    assert all(p.ok for p in problems)


def test_math500_style_rows_keep_latex_and_meta() -> None:
    rows = [
        {
            "problem": "Convert.",
            "answer": "\\left( 3, \\frac{\\pi}{2} \\right)",
            "subject": "Precalculus",
            "level": 2,
            "unique_id": "test/precalculus/807.json",
        }
    ]
    (problem,) = problems_from_items(rows)
    assert problem.ok
    assert problem.id == "test/precalculus/807.json"
    assert problem.gold == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert problem.meta == {"subject": "Precalculus", "level": 2}


def test_malformed_rows_become_error_rows(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "bad.jsonl",
        [
            {"question": "good 0", "answer": "#### 1"},
            "{not json",
            {"answer": "#### 2"},
            "[1, 2]",
            {"problem": 5},
            {"problem": "   "},
            {"problem": "good 6", "answer": "6"},
        ],
    )
    problems = load_problems(str(path))
    assert len(problems) == 7
    good = [p for p in problems if p.ok]
    assert [p.problem for p in good] == ["good 0", "good 6"]
    errors = {p.id: p.error for p in problems if not p.ok}
    assert set(errors) == {"1", "2", "3", "4", "5"}
    assert errors["1"].startswith("row 1: invalid JSON")
    assert errors["2"] == "row 2: missing field 'problem' (looked for problem, question)"
    assert "row 3" in errors["3"] and "list" in errors["3"]
    assert "row 4" in errors["4"] and "'problem'" in errors["4"]
    assert "row 5" in errors["5"] and "empty" in errors["5"]


def test_problems_from_items_strings_and_explicit_fields() -> None:
    problems = problems_from_items(
        ["What is 2+2?", 42, {"q": "x?", "a": "#### 3", "key": "k"}], start_index=10
    )
    assert problems[0] == Problem(id="10", problem="What is 2+2?")
    assert not problems[1].ok and problems[1].error.startswith("row 11:")
    explicit = problems_from_items([{"q": "x?", "a": "#### 3", "key": "k"}], "q", "a", "key")
    assert explicit == [Problem(id="k", problem="x?", gold="3")]
    missing = problems_from_items([{"question": "x?"}], problem_field="prompt")
    assert missing[0].error == "row 0: missing field 'prompt'"


def test_duplicate_ids_are_error_rows() -> None:
    rows = [{"problem": "a", "id": "x"}, {"problem": "b", "id": "y"}, {"problem": "c", "id": "x"}]
    problems = problems_from_items(rows)
    assert [p.ok for p in problems] == [True, True, False]
    assert problems[2].error == "row 2: duplicate id 'x' (first on row 0)"


def test_limit_and_offset(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "n.jsonl", [{"question": f"q{i}", "answer": f"#### {i}"} for i in range(10)]
    )
    problems = load_problems(str(path), limit=3, offset=4)
    assert [p.id for p in problems] == ["4", "5", "6"]
    assert [p.gold for p in problems] == ["4", "5", "6"]
    assert len(load_problems(str(path), offset=8)) == 2
    assert len(load_problems(str(path), limit=100)) == 10
    assert len(load_problems(str(path), limit=None)) == len(load_problems(str(path))) == 10
    for bad in (0, -1):
        with pytest.raises(ValueError, match="limit must be >= 1, or None for all rows"):
            load_problems(str(path), limit=bad)
    with pytest.raises(ValueError, match="offset must be >= 0"):
        load_problems(str(path), offset=-1)


def test_parquet_loading(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table(
        {
            "problem": ["p0", "p1", "p2"],
            "answer": ["\\frac{1}{2}", "3", "4"],
            "unique_id": ["a", "b", "c"],
        }
    )
    path = tmp_path / "m.parquet"
    pq.write_table(table, path)
    problems = load_problems(str(path), offset=1)
    assert [(p.id, p.problem, p.gold) for p in problems] == [("b", "p1", "3"), ("c", "p2", "4")]


def test_resolve_dataset_with_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPEX_RAY_DATA", str(tmp_path))
    target = _write_jsonl(tmp_path / "gsm8k_test.jsonl", [{"question": "q", "answer": "#### 1"}])
    assert resolve_dataset("gsm8k") == target
    assert load_problems("gsm8k")[0].gold == "1"
    assert resolve_dataset(str(target)) == target


def test_resolve_dataset_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPEX_RAY_DATA", str(tmp_path / "nowhere"))
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "absent.jsonl"
    with pytest.raises(FileNotFoundError) as info:
        resolve_dataset(str(missing))
    assert str(info.value) == (
        f"dataset {str(missing)!r} not found (looked for {missing}); "
        "named datasets: aime24, aime25, gsm8k, math500, sim"
    )
    with pytest.raises(FileNotFoundError) as info:
        resolve_dataset("/definitely/not/here.jsonl")
    assert "/definitely/not/here.jsonl" in str(info.value)


def test_resolve_named_dataset_missing_lists_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import spex_ray.tasks.catalog as catalog

    monkeypatch.setattr(catalog, "data_dirs", lambda: [tmp_path / "a", tmp_path / "b"])
    with pytest.raises(FileNotFoundError) as info:
        resolve_dataset("math500")
    message = str(info.value)
    assert str(tmp_path / "a" / "math500.jsonl") in message
    assert str(tmp_path / "b" / "math500.jsonl") in message


@pytest.mark.skipif(not REAL_GSM8K.is_file(), reason="shared GSM8K data not present")
def test_real_gsm8k_first_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPEX_RAY_DATA", str(REAL_GSM8K.parent))
    problems = load_problems("gsm8k", limit=3)
    assert len(problems) == 3
    assert all(p.ok for p in problems)
    assert problems[0].gold == "18"
    assert problems[0].problem.startswith("Janet")
    assert is_correct("18", problems[0].gold)


@pytest.mark.parametrize(
    "answer",
    ["10^{10^{10}}", "(1+x+y+z)^{20}", "\\binom{10^{9}}{10^{5}}", "(10^{100})!", "2^100000000"],
)
def test_pathological_answers_do_not_hang(answer: str) -> None:
    """Without math-verify timeouts, answers that would make sympy hang are compared by key only."""
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.append(is_correct(answer, "5")), daemon=True)
    thread.start()
    thread.join(timeout=20)
    assert results == [False]
    assert is_correct(answer, answer)


# --------------------------------------------------------------------------- limits in the config


def test_task_limit_unset_means_all_and_zero_is_rejected() -> None:
    from spex_ray.config import Config, ConfigError

    assert Config.load().task.limit is None
    assert Config.load(None, ["task.limit=5"]).task.limit == 5
    assert Config.load(None, ["task.limit=5", "task.limit=null"]).task.limit is None
    for value in ("0", "-3"):
        with pytest.raises(
            ConfigError, match=r"^task.limit: must be >= 1 \(leave it unset or null for all\)$"
        ):
            Config.load(None, [f"task.limit={value}"])
    with pytest.raises(ConfigError, match="task.limit: expected an integer or null"):
        Config.load(None, ["task.limit=many"])


def test_cli_limit_zero_is_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from spex_ray.cli import main

    path = _write_jsonl(tmp_path / "p.jsonl", [{"problem": "1+1?", "answer": "2"}])
    assert main(["solve", "--dataset", str(path), "--limit", "0", "--output", str(tmp_path / "run")]) == 2
    assert "task.limit: must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_sim_dataset_limit_none_is_its_full_size() -> None:
    from spex_ray.sim.workload import SIM_DATASET_SIZE, sim_dataset

    assert len(load_problems("sim")) == SIM_DATASET_SIZE
    assert [p.id for p in load_problems("sim", limit=2, offset=3)] == [
        p.id for p in load_problems("sim")[3:5]
    ]
    assert [row["id"] for row in sim_dataset(None, 98, 0)][:3] == ["sim-98", "sim-99", "sim-100"]
    assert len(sim_dataset(None, 98, 0)) == SIM_DATASET_SIZE  # a generated dataset has no end


# --------------------------------------------------------------------------- field check


def test_field_check_names_the_setting_for_unknown_fields(tmp_path: Path) -> None:
    from spex_ray.tasks import DatasetFieldError

    rows = [{"text": f"What is {i} + 1?", "solution": f"{i + 1}"} for i in range(3)]
    path = _write_jsonl(tmp_path / "other.jsonl", rows)
    with pytest.raises(DatasetFieldError) as info:
        load_problems(str(path))
    message = str(info.value)
    assert message == (
        f"dataset {str(path)!r}: no row has 'problem' or 'question'; its rows have the fields text, "
        "solution; name the field to read with --set task.problem_field=text "
        "(and --set task.answer_field=<field> for the gold answer)"
    )
    problems = load_problems(str(path), problem_field="text", answer_field="solution")
    assert [(p.problem, p.gold) for p in problems] == [(r["text"], r["solution"]) for r in rows]
    with pytest.raises(DatasetFieldError, match="no row has the field 'answer' named by task.answer_field"):
        load_problems(str(path), problem_field="text", answer_field="answer")
    with pytest.raises(DatasetFieldError, match="the field 'prompt' named by task.problem_field"):
        load_problems(str(path), problem_field="prompt")
    other = _write_jsonl(tmp_path / "ids.jsonl", [{"id": "a1", "answer": "3", "body": "What is 1 + 2?"}])
    with pytest.raises(
        DatasetFieldError,
        match=r"fields id, answer, body; name the field to read with --set task.problem_field=body$",
    ):
        load_problems(str(other))


def test_field_check_keeps_one_bad_row_to_itself(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "mixed.jsonl", ["{broken", {"text": "no problem here"}, {"question": "q?"}]
    )
    problems = load_problems(str(path))
    assert [p.ok for p in problems] == [False, False, True]
    assert (
        load_problems(str(_write_jsonl(tmp_path / "s.jsonl", ['"just a string"'])))[0].problem
        == "just a string"
    )


def test_field_check_fails_before_ray_starts(tmp_path: Path, monkeypatch, capsys) -> None:
    import time

    import spex_ray.api as api
    from spex_ray.cli import main

    def must_not_run(*args, **kwargs):
        raise AssertionError("Ray or an engine was started for a dataset whose fields are wrong")

    monkeypatch.setattr(api, "_ensure_ray", must_not_run)
    monkeypatch.setattr(api, "_run_batch", must_not_run)
    path = _write_jsonl(tmp_path / "text.jsonl", [{"text": "What is 2 + 2?", "solution": "4"}])
    started = time.monotonic()
    assert main(["solve", "--dataset", str(path), "--output", str(tmp_path / "run")]) == 2
    assert time.monotonic() - started < 5.0  # the CLI process takes under a second here
    assert "--set task.problem_field=text" in capsys.readouterr().err


# --------------------------------------------------------------------------- named datasets, the hub


GSM8K_ROWS = [{"question": f"Q{i}?", "answer": f"work\n#### {i},000"} for i in range(4)]


@pytest.fixture
def no_local_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No local copy of any named dataset: $SPEX_RAY_DATA and ./data are empty directories."""
    monkeypatch.setenv("SPEX_RAY_DATA", str(tmp_path / "env"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


class FakeHub:
    """Stands in for `datasets.load_dataset` (the hub is unreachable here); returns real Datasets."""

    def __init__(self, rows: list[dict], error: Exception | None = None) -> None:
        self.rows, self.error, self.calls, self.offline = rows, error, [], []

    def __call__(self, path, name=None, *, split=None, **kwargs):
        import datasets

        self.calls.append((path, name, split))
        self.offline.append(datasets.config.HF_HUB_OFFLINE)
        if self.error is not None:
            raise self.error
        return datasets.Dataset.from_list(self.rows)


def _fake_hub(monkeypatch, rows, error=None, reachable=True) -> FakeHub:
    datasets = pytest.importorskip("datasets")
    import spex_ray.tasks.hub as hub

    fake = FakeHub(rows, error)
    monkeypatch.setattr(datasets, "load_dataset", fake)
    monkeypatch.setattr(hub, "hub_reachable", lambda: reachable)
    return fake


def test_named_datasets_are_registered() -> None:
    from spex_ray.tasks import dataset_names, named_dataset

    assert dataset_names() == ["aime24", "aime25", "gsm8k", "math500"]
    assert named_dataset(" MATH-500 ").hub_id == "HuggingFaceH4/MATH-500"
    assert named_dataset("gsm8k_test").hub_config == "main"
    assert named_dataset("aime_2024").split == "train"
    assert named_dataset("some/file.jsonl") is None


@pytest.mark.parametrize(
    ("name", "hub_call"),
    [
        ("gsm8k", ("openai/gsm8k", "main", "test")),
        ("math500", ("HuggingFaceH4/MATH-500", None, "test")),
        ("aime24", ("HuggingFaceH4/aime_2024", None, "train")),
        ("aime25", ("yentinglin/aime_2025", None, "train")),
    ],
)
def test_named_dataset_loads_from_the_hub(no_local_data, monkeypatch, name, hub_call) -> None:
    fake = _fake_hub(monkeypatch, GSM8K_ROWS)
    problems = load_problems(name, limit=2, offset=1)
    assert fake.calls == [hub_call]
    assert fake.offline == [False]
    assert [(p.id, p.problem, p.gold) for p in problems] == [("1", "Q1?", "1000"), ("2", "Q2?", "2000")]
    assert len(load_problems(name)) == 4
    assert load_problems(name, offset=9) == []


def test_hub_rows_of_math500_and_aime_shapes(no_local_data, monkeypatch) -> None:
    math_row = {"problem": "Find x.", "solution": "...", "answer": "\\frac{1}{2}", "subject": "Algebra",
                "level": 3, "unique_id": "test/algebra/1.json"}  # fmt: skip
    _fake_hub(monkeypatch, [math_row])
    (problem,) = load_problems("math500")
    assert (problem.id, problem.gold, problem.meta) == (
        "test/algebra/1.json",
        "\\frac{1}{2}",
        {"subject": "Algebra", "level": 3},
    )
    aime_row = {
        "id": 60,
        "problem": "Every morning Aya walks.",
        "solution": "...",
        "answer": "204",
        "url": "u",
        "year": "2024",
    }
    _fake_hub(monkeypatch, [aime_row])
    (problem,) = load_problems("aime24")
    assert (problem.id, problem.gold) == ("60", "204")


def test_hub_failure_gives_its_reason(no_local_data, monkeypatch) -> None:
    from spex_ray.tasks.hub import DatasetUnavailable

    _fake_hub(monkeypatch, [], error=RuntimeError("Dataset 'openai/gsm8k' doesn't exist on the Hub\nmore"))
    with pytest.raises(
        DatasetUnavailable, match="'openai/gsm8k': Dataset 'openai/gsm8k' doesn't exist on the Hub. On a"
    ):
        load_problems("gsm8k")


def test_local_copy_comes_before_the_hub(no_local_data, monkeypatch) -> None:
    fake = _fake_hub(monkeypatch, GSM8K_ROWS)
    (no_local_data / "env").mkdir()
    (no_local_data / "data").mkdir()
    _write_jsonl(no_local_data / "env" / "gsm8k_test.jsonl", [{"question": "local?", "answer": "#### 7"}])
    _write_jsonl(no_local_data / "data" / "aime24.jsonl", [{"problem": "here?", "answer": "5"}])
    assert [p.problem for p in load_problems("gsm8k")] == ["local?"]  # $SPEX_RAY_DATA
    assert [p.problem for p in load_problems("aime24")] == ["here?"]  # ./data
    assert fake.calls == []


def test_offline_error_says_what_to_download_and_where(no_local_data, monkeypatch) -> None:
    from spex_ray.tasks.hub import DatasetUnavailable

    offline = ConnectionError("Couldn't reach 'openai/gsm8k' on the Hub (OfflineModeIsEnabled)")
    fake = _fake_hub(monkeypatch, [], error=offline, reachable=False)
    with pytest.raises(DatasetUnavailable) as info:
        load_problems("gsm8k")
    assert fake.offline == [True]  # unreachable: datasets looked in its cache only
    import datasets

    assert datasets.config.HF_HUB_OFFLINE is False  # and the offline switch was put back
    env, data = no_local_data / "env" / "gsm8k_test.jsonl", no_local_data / "data" / "gsm8k_test.jsonl"
    assert str(info.value) == (
        f"dataset 'gsm8k' is not on this machine (looked for {env}, {data}) and could not be loaded "
        "from the Hugging Face hub 'openai/gsm8k': the hub cannot be reached from this machine and the "
        '`datasets` cache has no copy. On a machine with internet run: python -c "from datasets import '
        "load_dataset; load_dataset('openai/gsm8k', 'main', split='test').to_json('gsm8k_test.jsonl')\""
        ", then put gsm8k_test.jsonl in $SPEX_RAY_DATA or ./data"
    )
    assert "\n" not in str(info.value)
    assert isinstance(info.value, FileNotFoundError)  # the CLI prints it as one error line


def test_offline_real_datasets_library_fails_fast(no_local_data, monkeypatch) -> None:
    pytest.importorskip("datasets")
    import time

    import spex_ray.tasks.hub as hub
    from spex_ray.tasks.catalog import NamedDataset

    monkeypatch.setattr(hub, "hub_reachable", lambda: False)
    spec = NamedDataset("toy", "toy.jsonl", "spex-ray-tests/no-such-dataset", "test")
    started = time.monotonic()
    with pytest.raises(
        hub.DatasetUnavailable, match="load_dataset\\('spex-ray-tests/no-such-dataset', split='test'\\)"
    ):
        hub.load_hub_rows(spec, None, 0)
    assert time.monotonic() - started < 10


def test_download_command_writes_the_file_the_loader_reads(no_local_data, monkeypatch) -> None:
    _fake_hub(monkeypatch, GSM8K_ROWS)
    from spex_ray.tasks import named_dataset

    command = named_dataset("gsm8k").download_command()
    code = command.removeprefix('python -c "').removesuffix('"')
    target = no_local_data / "env"
    target.mkdir()
    monkeypatch.chdir(target)
    exec(code, {})  # noqa: S102 - the command the error message tells a user to run
    assert [p.gold for p in load_problems("gsm8k")] == ["0000", "1000", "2000", "3000"]


def test_missing_datasets_package_is_named(no_local_data, monkeypatch) -> None:
    from spex_ray.tasks.hub import DatasetUnavailable

    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(
        DatasetUnavailable, match=r"the `datasets` package is not installed \(pip install datasets\)"
    ):
        load_problems("math500")


def test_hub_reachable_probe(monkeypatch) -> None:
    import socket

    from spex_ray.tasks.hub import hub_reachable

    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert hub_reachable(timeout_s=2)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:1")  # nothing listens on port 1
    assert not hub_reachable(timeout_s=2)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    assert hub_reachable(timeout_s=2)
