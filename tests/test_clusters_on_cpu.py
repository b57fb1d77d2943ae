"""The files in clusters/ load and hold what the README and the elastic engine pool rely on.

The launcher files (aws, gcp, local-fake) go through Ray's own config preparation and
validation (ray-schema.json and the launcher's checks). The providers' bootstrap step is
not run: it needs boto3 / the Google API client and credentials. The KubeRay manifests
are checked against the field names and types of KubeRay's RayCluster and RayJob CRDs
(ray.io/v1, as of KubeRay 1.7) for the parts spex_ray sets; the RayJob's entrypoint is
parsed as `spex-ray solve` and its config loaded.
"""

from __future__ import annotations

import copy
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml
from ray.autoscaler._private.fake_multi_node.node_provider import FAKE_HEAD_NODE_TYPE, FakeMultiNodeProvider
from ray.autoscaler._private.providers import _get_node_provider_cls
from ray.autoscaler._private.util import prepare_config, validate_config

from spex_ray import cli
from spex_ray.config import Config

REPO = Path(__file__).resolve().parents[1]
CLUSTERS = REPO / "clusters"
CLOUDS = ("aws.yaml", "gcp.yaml")
LAUNCHER_FILES = (*CLOUDS, "local-fake.yaml")
COMMAND_KEYS = (
    "initialization_commands",
    "setup_commands",
    "head_setup_commands",
    "worker_setup_commands",
    "head_start_ray_commands",
    "worker_start_ray_commands",
)
IMAGE_CHECKOUT = "/home/ray/spex_ray"  # where clusters/kuberay/Dockerfile puts this checkout
NODE_CHECKOUT = "~/spex_ray"  # where the launcher files sync it


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((CLUSTERS / name).read_text())


def gpu_types(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    types = config["available_node_types"]
    return {name: t for name, t in types.items() if t["resources"].get("GPU", 0) > 0}


def commands(config: dict[str, Any]) -> list[str]:
    return [command for key in COMMAND_KEYS for command in config.get(key, [])]


@pytest.mark.parametrize("name", LAUNCHER_FILES)
def test_launcher_files_pass_rays_own_validation(name):
    config = load(name)
    prepared = prepare_config(copy.deepcopy(config))  # defaults merged, as `ray up` does
    validate_config(prepared)
    assert prepared["head_node_type"] in prepared["available_node_types"]


@pytest.mark.parametrize("name", LAUNCHER_FILES)
def test_gpu_workers_start_at_zero_on_a_cpu_head(name):
    config = load(name)
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0 and head.get("max_workers", 0) == 0
    workers = gpu_types(config)
    assert workers, f"{name}: no GPU worker type"
    for worker in workers.values():
        assert worker["min_workers"] == 0 and worker["max_workers"] >= 1
        assert worker["resources"]["CPU"] >= 1
    assert config["idle_timeout_minutes"] > 0 and config["max_workers"] >= 1


def test_the_fake_cluster_file_runs_as_the_autoscaler_reads_it():
    config = load("local-fake.yaml")
    validate_config(config)  # the autoscaler reads it as is, with no defaults merged in
    assert _get_node_provider_cls(config["provider"]) is FakeMultiNodeProvider
    assert config["head_node_type"] == FAKE_HEAD_NODE_TYPE  # the type the provider tags its head with
    provider = config["provider"]
    assert provider["use_node_id_as_ip"] and provider["disable_node_updaters"]
    assert provider["disable_launch_config_check"] and "gcs_address" not in provider
    assert config["idle_timeout_minutes"] <= 0.1
    assert not commands(config) and not config["file_mounts"]


@pytest.mark.parametrize("name", CLOUDS)
def test_cloud_nodes_sync_the_checkout_and_the_token_and_start_ray_with_token_auth(name):
    config = load(name)
    assert config["file_mounts"][NODE_CHECKOUT] == "."
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    starts = [c for c in commands(config) if "ray start" in c]
    assert len(starts) == 2 and all("RAY_AUTH_MODE=token ray start" in c for c in starts)
    assert any("--autoscaling-config=~/ray_bootstrap_config.yaml" in c for c in starts)
    assert any("[sglang]" in c for c in config["worker_setup_commands"])


@pytest.mark.parametrize("name", CLOUDS)
def test_cloud_commands_are_bash_and_name_files_of_this_checkout(name):
    config = load(name)
    for command in commands(config):
        check = subprocess.run(["bash", "-n", "-c", command], capture_output=True, text=True)
        assert check.returncode == 0, f"{name}: {command!r}: {check.stderr}"
        for path in re.findall(rf"{re.escape(NODE_CHECKOUT)}/([\w./-]+)", command):
            if path.startswith(".venv/"):  # made on the node, by scripts/setup_venv.sh
                continue
            assert (REPO / path).exists(), f"{name}: {command!r} names {path}, not in this checkout"


def test_every_cluster_runs_the_ray_of_this_checkout():
    version = ray.__version__
    for name in CLOUDS:
        pins = {p for c in commands(load(name)) for p in re.findall(r"ray\[default\]==([\w.]+)", c)}
        assert pins == {version}, name
    for name in ("raycluster.yaml", "rayjob.yaml"):
        spec = load(f"kuberay/{name}")["spec"]
        assert spec.get("rayClusterSpec", spec)["rayVersion"] == version, name
    dockerfile = (CLUSTERS / "kuberay" / "Dockerfile").read_text()
    assert f"FROM rayproject/ray:{version}-py311-gpu" in dockerfile


# KubeRay's field names for the parts spex_ray sets (ray.io/v1 CRDs, KubeRay 1.7).
RAYCLUSTER_SPEC_KEYS = {
    "authOptions", "autoscalerOptions", "enableInTreeAutoscaling", "gcsFaultToleranceOptions",
    "headGroupSpec", "headServiceAnnotations", "historyServerOptions", "managedBy",
    "networkPolicy", "rayVersion", "suspend", "tlsOptions", "upgradeStrategy", "workerGroupSpecs",
}  # fmt: skip
AUTOSCALER_OPTION_KEYS = {
    "args", "command", "env", "envFrom", "idleTimeoutSeconds", "image", "imagePullPolicy",
    "resources", "securityContext", "upscalingMode", "version", "volumeMounts",
}  # fmt: skip
HEAD_GROUP_KEYS = {
    "enableIngress", "headService", "ingressOptions", "labels", "rayStartParams", "resources",
    "serviceType", "template",
}  # fmt: skip
WORKER_GROUP_KEYS = {
    "groupName", "idleTimeoutSeconds", "labels", "maxReplicas", "minReplicas", "numOfHosts",
    "priority", "rayStartParams", "replicas", "resources", "scaleStrategy", "suspend", "template",
}  # fmt: skip
RAYJOB_SPEC_KEYS = {
    "activeDeadlineSeconds", "backoffLimit", "clusterSelector", "deletionStrategy", "entrypoint",
    "entrypointNumCpus", "entrypointNumGpus", "entrypointResources", "jobId", "managedBy",
    "metadata", "preRunningDeadlineSeconds", "rayClusterSpec", "runtimeEnvYAML",
    "shutdownAfterJobFinishes", "submissionMode", "submitterConfig", "submitterPodTemplate",
    "suspend", "ttlSecondsAfterFinished",
}  # fmt: skip


def expect(mapping: dict[str, Any], where: str, known: set[str], required: dict[str, type]) -> None:
    """`mapping` has only `known` keys and each `required` key with its type."""
    assert isinstance(mapping, dict), f"{where}: not a mapping"
    assert not set(mapping) - known, f"{where}: unknown keys {sorted(set(mapping) - known)}"
    for key, kind in required.items():
        assert isinstance(mapping.get(key), kind), f"{where}.{key}: missing or not {kind.__name__}"


def containers(group: dict[str, Any], where: str) -> list[dict[str, Any]]:
    pod = group["template"]["spec"]
    assert isinstance(pod.get("containers"), list) and pod["containers"], f"{where}: no containers"
    for container in pod["containers"]:
        assert isinstance(container.get("name"), str) and isinstance(container.get("image"), str)
    return pod["containers"]


def check_raycluster_spec(spec: dict[str, Any], where: str) -> None:
    expect(
        spec,
        where,
        RAYCLUSTER_SPEC_KEYS,
        {"rayVersion": str, "enableInTreeAutoscaling": bool, "autoscalerOptions": dict, "authOptions": dict},
    )
    assert spec["enableInTreeAutoscaling"] is True
    options = spec["autoscalerOptions"]
    expect(options, f"{where}.autoscalerOptions", AUTOSCALER_OPTION_KEYS, {"idleTimeoutSeconds": int})
    assert options.get("version") in ("v1", "v2") and options.get("upscalingMode") in (
        "Default",
        "Aggressive",
        "Conservative",
    )
    assert spec["authOptions"] == {"mode": "token"}
    head = spec["headGroupSpec"]
    expect(head, f"{where}.headGroupSpec", HEAD_GROUP_KEYS, {"rayStartParams": dict, "template": dict})
    (head_container,) = containers(head, f"{where}.headGroupSpec")
    assert {p["containerPort"] for p in head_container["ports"]} >= {6379, 8265}
    assert "nvidia.com/gpu" not in head_container["resources"]["limits"]
    (group,) = spec["workerGroupSpecs"]
    required = {"groupName": str, "replicas": int, "minReplicas": int, "maxReplicas": int, "template": dict}
    expect(group, f"{where}.workerGroupSpecs[0]", WORKER_GROUP_KEYS, {**required, "rayStartParams": dict})
    assert group["replicas"] == 0 and group["minReplicas"] == 0 and group["maxReplicas"] >= 1
    (worker,) = containers(group, f"{where}.workerGroupSpecs[0]")
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert worker["image"] == head_container["image"]


def check_manifest_header(doc: dict[str, Any], kind: str) -> None:
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == kind
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])


def test_the_raycluster_autoscales_gpu_workers_from_zero_with_token_auth():
    doc = load("kuberay/raycluster.yaml")
    check_manifest_header(doc, "RayCluster")
    check_raycluster_spec(doc["spec"], "spec")


def test_the_rayjob_runs_a_solve_on_such_a_cluster():
    doc = load("kuberay/rayjob.yaml")
    check_manifest_header(doc, "RayJob")
    spec = doc["spec"]
    expect(
        spec,
        "spec",
        RAYJOB_SPEC_KEYS,
        {"entrypoint": str, "shutdownAfterJobFinishes": bool, "rayClusterSpec": dict},
    )
    check_raycluster_spec(spec["rayClusterSpec"], "spec.rayClusterSpec")
    program, command, *argv = shlex.split(spec["entrypoint"])
    assert (program, command) == ("spex-ray", "solve")
    args = cli._parser().parse_args([command, *argv])
    assert args.config.startswith(f"{IMAGE_CHECKOUT}/")
    config = Config.load(REPO / args.config.removeprefix(f"{IMAGE_CHECKOUT}/"), cli._overrides(args))
    assert config.run.output.startswith(("s3://", "gs://"))  # a job's output outlives its pods


def readme_cluster_commands() -> list[list[str]]:
    """The commands of the README's "Running on a cluster" code blocks, as argv lists
    (continuation lines joined, comments and trailing `&` dropped)."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Running on a cluster\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    assert len(blocks) >= 3, "the cluster section's command blocks"
    argvs = []
    for block in blocks:
        check = subprocess.run(["bash", "-n", "-c", block], capture_output=True, text=True)
        assert check.returncode == 0, f"{block}\n{check.stderr}"
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            argvs.append(argv[:-1] if argv and argv[-1] == "&" else argv)
    return [argv for argv in argvs if argv]


def ray_command(argv: list[str]):
    """Parse a `ray ...` argv with Ray's own CLI (click), down to its subcommand, without
    running it."""
    import click
    from ray.scripts.scripts import cli as ray_cli

    command, args = ray_cli, argv[1:]
    while isinstance(command, click.Group):
        context = click.Context(command, info_name=args[0])
        command, args = command.get_command(context, args[0]), args[1:]
        assert command is not None, f"{argv}: no such ray command"
    return command.make_context(command.name, args)


def test_the_readme_cluster_commands_parse_and_name_files_of_this_checkout():
    argvs = readme_cluster_commands()
    for argv in argvs:
        if argv[0] == "ray":
            ray_command(argv)
        for word in argv:
            for path in re.findall(r"\b((?:clusters|configs)/[\w./-]+\.\w+|clusters/[\w/-]+)", word):
                assert (REPO / path).exists(), f"{argv}: {path} is not in this checkout"
    names = {" ".join(argv[:2]) for argv in argvs}
    assert {"ray up", "ray down", "ray dashboard", "ray job", "kubectl apply", "docker build"} <= names


def test_the_readme_job_runs_a_valid_solve_config():
    argvs = readme_cluster_commands()
    exports = dict(
        arg.split("=", 1) for argv in argvs if argv[0] == "export" for arg in argv[1:] if "=" in arg
    )
    (submit,) = [argv for argv in argvs if argv[:3] == ["ray", "job", "submit"]]
    entrypoint = submit[submit.index("--") + 1 :]
    assert entrypoint[:2] == ["spex-ray", "solve"]
    args = cli._parser().parse_args([arg.replace("${RUNS:?}", exports["RUNS"]) for arg in entrypoint[1:]])
    Config.load(REPO / args.config, cli._overrides(args))
