"""Config: YAML + overrides, typed coercion, errors that name the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from spex_ray.config import Config, ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_defaults_validate_and_match_the_cpu_config():
    assert Config().validate().to_dict() == Config.load(REPO / "configs" / "cpu.yaml").to_dict()


def test_overrides_are_typed():
    config = Config.load(
        None,
        [
            "search.algorithm=mcts",
            "search.rollouts=4",
            "search.width=8",
            "run.concurrency=4",
            "run.seed=7",
            "policy.temperature=1",
            "spex.allocator=off",
            "policy.model=some/hub-id",
        ],
    )
    assert config.search.algorithm == "mcts"
    assert (config.search.rollouts, config.search.width, config.run.seed) == (4, 8, 7)
    assert config.policy.temperature == 1.0 and isinstance(config.policy.temperature, float)
    assert config.spex.allocator == "off"
    assert config.policy.model == "some/hub-id"


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("search.nope=1", "search.nope"),
        ("nosection.width=1", "nosection"),
        ("search.width=many", "search.width"),
        ("search.width=0", "search.width"),
        ("search.algorithm=dfs", "search.algorithm"),
        ("run.resume=maybe", "run.resume"),
        ("policy.top_p=2", "policy.top_p"),
        ("searchwidth", "section.key=value"),
    ],
)
def test_bad_overrides_name_the_key(override, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        Config.load(None, [override])


def test_yaml_errors_name_the_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("search:\n  width: lots\n")
    with pytest.raises(ConfigError, match=r"search\.width"):
        Config.load(path)
    path.write_text("search: 3\n")
    with pytest.raises(ConfigError, match="search"):
        Config.load(path)


def test_spex_switches():
    config = Config.load(
        None, ["spex.speculate=true", "spex.allocator=fifo", "spex.early_stop=true", "spex.tau=0.5"]
    )
    assert (config.spex.speculate, config.spex.allocator, config.spex.early_stop) == (True, "fifo", True)
    with pytest.raises(ConfigError, match=r"spex\.allocator"):
        Config.load(None, ["spex.allocator=greedy"])


def test_ready_configs_load():
    for path in sorted((REPO / "configs").glob("*.yaml")):
        Config.load(path)


def test_every_config_validates_without_importing_sglang():
    """Every run config (a YAML of Config sections) loads and validates on a machine without
    sglang (in a fresh interpreter, so no other test's imports count)."""
    script = (
        "import sys, pathlib\n"
        "from spex_ray.config import Config\n"
        "paths = sorted(pathlib.Path('configs').glob('*.yaml'))  # run configs; workloads/ holds sim workloads\n"
        "backends = {Config.load(p).policy.backend for p in paths}\n"
        "assert 'sglang' not in sys.modules, 'loading configs imported sglang'\n"
        "print(len(paths), sorted(backends))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    count, _, backends = out.stdout.partition(" ")
    assert int(count) >= 7 and "sglang" in backends
