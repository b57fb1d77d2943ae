"""Engine backends are registered by their settings: a new one is one file and one line."""

from __future__ import annotations

import asyncio

import pytest
import yaml

from spex_ray.actors.pool import ActorResources, policy_resources
from spex_ray.config import Config, ConfigError
from spex_ray.engines import Engine, GenRequest, build_engine
from spex_ray.registries import BACKENDS


@pytest.fixture
def toy_backend():
    BACKENDS.register("toy", "toy_backend:ToySettings")  # the one registry line
    yield
    BACKENDS.unregister("toy")


def test_a_toy_backend_is_one_file_and_one_registry_line(toy_backend):
    config = Config.load(None, ["policy.backend=toy", "policy.toy.reply=hello", "policy.max_batch_size=3"])
    engine = build_engine(config.policy, "engine-2")
    assert isinstance(engine, Engine) and engine.name == "engine-2" and engine.knee() == 3
    result = asyncio.run(engine.generate(GenRequest(prompt="world peace")))
    assert result.text == "hello world"
    assert engine.load().max_batch_size == 3
    assert policy_resources(config.policy) == ActorResources(0.0, 1.0)
    on_gpu = Config.load(None, ["policy.backend=toy", "policy.toy.on_gpu=true"])
    assert policy_resources(on_gpu.policy) == ActorResources(1.0, 1.0)  # the backend says it needs a GPU
    with pytest.raises(ConfigError, match=r"policy\.toy\.reply"):
        Config.load(None, ["policy.backend=toy", "policy.toy.reply="])
    written = yaml.safe_load(yaml.safe_dump(config.to_dict()))
    assert written["policy"]["toy"] == {"reply": "hello", "on_gpu": False}
    assert Config.from_dict(written).validate() == config


def test_backend_sections_load_from_yaml_and_overrides(tmp_path):
    path = tmp_path / "sim.yaml"
    path.write_text(
        "policy:\n  backend: sim\n  model: llemma-7b\n  sim:\n    gpu: a6000\n    time_scale: 0\n"
    )
    config = Config.load(path, ["policy.sim.spec_decode=eagle"])
    sim = config.policy.to_dict()["sim"]
    assert (sim["gpu"], sim["time_scale"], sim["spec_decode"]) == ("a6000", 0.0, "eagle")
    assert Config.from_dict(config.to_dict()).validate() == config
    with pytest.raises(ConfigError, match=r"policy\.sim\.gpu"):
        Config.load(path, ["policy.sim.gpu=tpu"])
    with pytest.raises(ConfigError, match=r"policy\.sim\.spec_decode"):
        Config.load(path, ["policy.sim.spec_decode=none"])  # one rule: the simulator's section
    with pytest.raises(ConfigError, match="policy.nope"):
        Config.load(path, ["policy.nope.gpu=a6000"])
    with pytest.raises(ConfigError, match="expected a mapping"):
        Config.from_dict({"policy": {"sim": 3}})


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("policy.gpu=a6000", "policy.sim.gpu"),
        ("policy.time_scale=0", "policy.sim.time_scale"),
        ("policy.sim_workload=w.yaml", "policy.sim.workload"),
        ("policy.device=cuda", "policy.hf.device"),
        ("policy.sglang_args={a: 1}", "policy.sglang.server_args"),
        ("policy.deterministic=false", "policy.sglang.deterministic"),
        ("policy.spec_decode=eagle", "policy.sim.spec_decode or policy.sglang.spec_decode"),
    ],
)
def test_moved_flat_keys_name_their_new_place(old, new):
    with pytest.raises(ConfigError, match=f"moved to {new}"):
        Config.load(None, [old])
    key, _, value = old.partition("=")
    with pytest.raises(ConfigError, match=f"moved to {new}"):
        Config.from_dict({"policy": {key.removeprefix("policy."): yaml.safe_load(value)}})


def test_config_imports_no_backend_reward_or_algorithm_module():
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from spex_ray.config import Config\n"
        "Config.load(None, ['reward.kind=prm', 'reward.model=m', 'search.algorithm=mcts'])\n"
        "heavy = [m for m in sys.modules if m.startswith(('spex_ray.engines', 'spex_ray.rewards', 'spex_ray.tree'))]\n"
        "heavy = [m for m in heavy if m not in ('spex_ray.engines', 'spex_ray.engines.base',"
        " 'spex_ray.engines.hf_settings')]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_admission_queue_admits_main_before_spec_fifo_within_a_priority():
    from dataclasses import dataclass

    from spex_ray.engines import Priority
    from spex_ray.engines.admission import AdmissionQueue, request_problem

    @dataclass
    class Item:
        request: GenRequest

    queue: AdmissionQueue[Item] = AdmissionQueue()
    spec = Item(GenRequest(prompt="s", priority=Priority.SPEC))
    main1, main2 = Item(GenRequest(prompt="m1")), Item(GenRequest(prompt="m2"))
    for item in (spec, main1, main2):
        queue.push(item)
    assert queue.peek() is main1 and queue.pop() is main1 and queue.count(Priority.MAIN) == 1
    assert spec.request.request_id in queue and queue.remove(spec.request.request_id) is spec
    assert queue.remove("unknown") is None and queue.drain() == [main2] and not queue
    request = GenRequest(prompt="p", max_new_tokens=8)
    assert request_problem(request, [], limit=10, limit_text="x", in_flight=False) == "the prompt is empty"
    too_long = request_problem(
        request, [1, 2, 3], limit=10, limit_text="the model's 10 positions", in_flight=False
    )
    assert too_long == "prompt too long: 3 prompt tokens + max_new_tokens 8 = 11 > the model's 10 positions"
    assert request_problem(request, [1, 2, 3], limit=0, limit_text="", in_flight=False) is None  # 0 = unknown
    assert "already in flight" in request_problem(request, [1], limit=10, limit_text="", in_flight=True)
