"""`hubctl models switch-backend`, its pure half (hub.models.backend, hub.models.plan): which
nodes build and restart, whether the switch is instant, the response; the environment and
version checks; and a plan with an association, whose generated process runs from the other
environment with that backend's layers and GPU visibility variable, while a node's previous
deployment comes back as its record says it was started."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from hub.models import catalog, convert, deploy, plan
from hub.models.backend import (
    Decision,
    NodeView,
    Refused,
    decide,
    environment_of,
    placements,
    plans,
)
from hub.models.load import parse_models
from hub.models.schema import Model
from hub.store.deployments import Deployed

CPU = """\
name: tiny
engine: llama-cpp
source: {path: /srv/models/tiny.gguf}
llama_cpp: {backend: cpu, n_ctx: 256}
"""
CUDA = """\
name: big
engine: llama-cpp
source: {path: /srv/models/big.gguf}
llama_cpp: {n_gpu_layers: 20, env: {GREETING: hi}}
vram_gb: 6
"""
VLLM = """\
name: coder
engine: vllm
source: {hf: {repo: Org/Coder}}
vram_gb: 40
"""
SINCE = datetime(2026, 11, 30, tzinfo=UTC)


def model(text: str) -> Model:
    [found] = parse_models(text, Path("/etc/gpufleet/models/m.yaml"))
    return found


def view(name: str, runs: bool = True, ready: bool = True, connected: bool = True,
         known: bool = True) -> NodeView:  # fmt: skip
    return NodeView(name, known, connected, runs, ready)


def test_ready_everywhere_is_instant_and_restarts_the_nodes_that_run_the_model() -> None:
    found = decide("cpu", "vulkan", [view("a"), view("b", runs=False)], no_restart=False)
    assert found == Decision("vulkan", ("a",), ("a",), (), False)
    assert found.instant and found.build_lines() == []
    reply = convert.backend_switched(found, "op-1")
    assert (reply.instant_switch, reply.environment, reply.operation_id) == (True, "vulkan", "op-1")
    assert list(reply.nodes) == ["a"] and list(reply.builds) == []


def test_a_node_without_the_environment_builds_it_first_and_is_not_instant() -> None:
    found = decide("cpu", "vulkan-0.3.36", [view("a"), view("b", ready=False),
                                            view("c", runs=False, ready=False)], False)  # fmt: skip
    assert found.nodes == ("a", "b", "c") and found.restarts == ("a", "b")
    assert found.builds == ("b", "c") and not found.instant
    assert found.build_lines() == ["b has no ready vulkan-0.3.36 environment",
                                   "c has no ready vulkan-0.3.36 environment"]  # fmt: skip
    assert list(convert.backend_switched(found, "op").builds) == found.build_lines()


def test_no_restart_builds_what_is_missing_and_restarts_nothing() -> None:
    found = decide("cpu", "vulkan", [view("a"), view("b", ready=False)], no_restart=True)
    assert found.restarts == () and found.nodes == ("b",) and found.builds == ("b",)
    ready = decide("cpu", "vulkan", [view("a")], no_restart=True)
    assert ready.nodes == () and ready.instant  # the association alone, at once


def test_a_model_that_runs_nowhere_only_changes_its_association() -> None:
    found = decide("cuda", "vulkan", [], no_restart=False)
    assert found.nodes == () and found.instant and not found.forget
    assert convert.backend_switched(found, "").operation_id == ""


def test_back_to_the_definitions_backend_forgets_unless_a_version_is_pinned() -> None:
    assert decide("cpu", "cpu", [view("a")], False).forget
    assert not decide("cpu", "cpu-0.3.36", [view("a")], False).forget


def test_unknown_and_disconnected_nodes_are_refused_with_one_line() -> None:
    with pytest.raises(Refused) as unknown:
        decide("cpu", "vulkan", [view("a"), view("ghost", known=False)], False)
    assert unknown.value.kind == "not_found"
    assert str(unknown.value) == "unknown node ghost: `hubctl nodes` lists the known nodes"
    with pytest.raises(Refused) as down:
        decide("cpu", "vulkan", [view("a"), view("b", connected=False)], False)
    assert down.value.kind == "conflict" and "node b is not connected" in str(down.value)
    assert "\n" not in str(down.value)


def test_with_no_nodes_named_the_disconnected_ones_that_run_it_are_left_out() -> None:
    """Every node that runs the model: one that is down takes the association at its next
    start instead of holding the switch up; all of them down: the association alone, at once."""
    some = decide("cpu", "vulkan", [view("a"), view("b", connected=False, ready=False)], False,
                  named=False)  # fmt: skip
    assert (some.nodes, some.restarts, some.builds, some.left_out) == (("a",), ("a",), (), ("b",))
    assert some.instant
    for no_restart in (False, True):
        down = decide("cpu", "vulkan-0.3.36", [view("a", connected=False, ready=False),
                                               view("b", connected=False)], no_restart,
                      named=False)  # fmt: skip
        assert down.nodes == () and down.instant and down.left_out == ("a", "b")
        assert convert.backend_switched(down, "").operation_id == ""
    # Named, a node that is down is still refused.
    with pytest.raises(Refused) as refused:
        decide("cpu", "vulkan", [view("a", connected=False)], True, named=True)
    assert refused.value.kind == "conflict"


def test_the_environment_is_the_backend_or_backend_version_and_bad_ones_are_refused() -> None:
    assert environment_of("vulkan", "") == "vulkan"
    assert environment_of("rocm", "0.3.36") == "rocm-0.3.36"
    assert environment_of("cuda", "0.3.36+cu124") == "cuda-0.3.36+cu124"
    for backend, version, words in (
        ("metal", "", "backend 'metal' is not one of cuda, vulkan, rocm, cpu"),
        ("", "", "backend '' is not one of"),
        ("cpu", "latest", "version 'latest' is not a version"),
        ("cpu", "0.3/../x", "is not a version"),
        ("cpu", "1" * 40, "is not a version"),  # longer than an environment name may be
    ):
        with pytest.raises(Refused) as refused:
            environment_of(backend, version)
        assert refused.value.kind == "invalid" and words in str(refused.value)


def test_on_environment_takes_the_backends_layers_and_keeps_a_gpu_models_count() -> None:
    tiny, big = model(CPU), model(CUDA)
    assert deploy.on_environment(tiny, "") is tiny and deploy.on_environment(tiny, "cpu") is tiny
    on_vulkan = deploy.on_environment(tiny, "vulkan-0.3.36")
    assert on_vulkan.llama_cpp is not None and on_vulkan.llama_cpp.backend == "vulkan"
    assert on_vulkan.llama_cpp.n_gpu_layers is None and deploy.needs_gpu(on_vulkan)
    on_rocm = deploy.on_environment(big, "rocm")
    assert on_rocm.llama_cpp is not None and on_rocm.llama_cpp.n_gpu_layers == 20
    on_cpu = deploy.on_environment(big, "cpu")
    assert on_cpu.llama_cpp is not None and on_cpu.llama_cpp.n_gpu_layers is None
    assert not deploy.needs_gpu(on_cpu)
    vllm = model(VLLM)
    assert deploy.on_environment(vllm, "vulkan") is vllm


def write(tmp_path: Path, *texts: str) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    for text in texts:
        (models / f"{model(text).name}.yaml").write_text(text)
    return models


def test_a_plan_with_an_association_runs_the_process_from_that_environment(
    tmp_path: Path,
) -> None:
    models = write(tmp_path, CPU)
    configs = tmp_path / "none"
    own = plan.plan(models, configs, plan.Request("tiny", (), 0, 18000, "img"), [])
    associated = plan.Request("tiny", (), 0, 18000, "img", plan.environments({"tiny": "vulkan"}))
    moved = plan.plan(models, configs, associated, [])
    assert own.target.process is not None and moved.target.process is not None
    assert own.target.process.environment == "cpu" and own.where.gpus == ()
    assert "--n_gpu_layers=0" in own.target.process.args
    assert dict(own.target.process.env) == {}
    assert moved.target.process.environment == "vulkan" and moved.where.gpus == (0,)
    assert "--n_gpu_layers=-1" in moved.target.process.args
    assert dict(moved.target.process.env) == {"GGML_VK_VISIBLE_DEVICES": "0"}
    assert moved.target.digest != own.target.digest
    # Associated with its own backend: the very process of no association.
    same = plan.Request("tiny", (), 0, 18000, "img", plan.environments({"tiny": "cpu"}))
    assert plan.plan(models, configs, same, []).target.digest == own.target.digest


def test_a_gpu_model_moved_to_cpu_takes_no_gpu_and_a_version_is_named(tmp_path: Path) -> None:
    models = write(tmp_path, CUDA)
    asked = plan.Request("big", (), 0, 18000, "img", (("big", "cpu-0.3.36"),))
    found = plan.plan(models, tmp_path, asked, [])
    spec = found.target.process
    assert spec is not None and spec.environment == "cpu-0.3.36" and found.where.gpus == ()
    assert "--n_gpu_layers=0" in spec.args and dict(spec.env) == {"GREETING": "hi"}
    assert found.vram_gb == 0.0
    rocm = plan.plan(models, tmp_path, plan.Request("big", (1,), 0, 18000, "img",
                                                   (("big", "rocm"),)), [])  # fmt: skip
    assert rocm.target.process is not None
    assert dict(rocm.target.process.env) == {"GREETING": "hi", "HIP_VISIBLE_DEVICES": "1"}
    assert "--n_gpu_layers=20" in rocm.target.process.args


def test_the_previous_deployment_comes_back_from_the_environment_it_was_started_from(
    tmp_path: Path,
) -> None:
    models = write(tmp_path, CPU)
    on_vulkan = plan.Stored("n1", "tiny", (0,), 18000, "vulkan")
    on_cpu = plan.Stored("n2", "tiny", (), 18001, "cpu")
    old = plan.Stored("n3", "tiny", (), 18002)  # recorded before environments were
    # The association is back to cpu now; n1 still runs what it was started with.
    found = plan.plan(models, tmp_path, plan.Request("tiny", (), 0, 18000, "img"),
                      [on_vulkan, on_cpu, old])  # fmt: skip
    spec = found.previous["n1"].process
    assert spec is not None and spec.environment == "vulkan"
    assert dict(spec.env) == {"GGML_VK_VISIBLE_DEVICES": "0"}
    assert found.previous["n2"].process is not None
    assert found.previous["n2"].process.environment == "cpu"
    old_spec = found.previous["n3"].process  # no environment recorded: its backend
    assert old_spec is not None and old_spec.environment == "cpu"
    assert plan.regenerated(models, [on_vulkan], "img")["n1"].digest == found.previous["n1"].digest


def test_each_restarted_node_keeps_its_port_and_gpus_unless_it_goes_to_the_cpu(
    tmp_path: Path,
) -> None:
    stored = {
        "a": Deployed("a", "big", "llama-cpp", "model-big", (1, 2), 18001, "d", SINCE, "cuda"),
        "b": Deployed("b", "big", "llama-cpp", "model-big", (0,), 18002, "d", SINCE, "cuda"),
    }
    asked = placements("vulkan", ("a", "b", "c"), stored, "img", "vulkan", "big")
    assert (asked["a"].gpus, asked["a"].port) == ((1, 2), 18001)
    assert (asked["c"].gpus, asked["c"].port) == ((), 0)  # no record: the defaults
    assert asked["a"].environments == (("big", "vulkan"),)
    to_cpu = placements("cpu", ("a",), stored, "img", "cpu", "big")
    assert to_cpu["a"].gpus == () and to_cpu["a"].port == 18001
    models = write(tmp_path, CUDA, VLLM)
    found_model, found = plans(models, "big", asked, [])
    assert found_model.name == "big" and sorted(found) == ["a", "b", "c"]
    assert found["a"].where == deploy.Placement((1, 2), 18001)
    assert found["c"].where == deploy.Placement((0,), 8000)
    spec = found["a"].target.process
    assert spec is not None and dict(spec.env)["GGML_VK_VISIBLE_DEVICES"] == "1,2"
    vllm, none = plans(models, "coder", {}, [])
    assert vllm.engine == "vllm" and none == {}
    with pytest.raises(catalog.NotFound, match="bigg"):
        plans(models, "bigg", {}, [])


def test_the_listing_says_which_environment_a_model_runs_from(tmp_path: Path) -> None:
    models = write(tmp_path, CPU, CUDA, VLLM)
    entries, _ = catalog.listing(models, 24 * 1024, {"tiny": "vulkan-0.3.36"})
    info = {e.model.name: convert.info(e) for e in entries}
    assert (info["tiny"].environment, info["tiny"].backend_switched) == ("vulkan-0.3.36", True)
    # On vulkan it needs GPUs now (how many is unknown: its file is not on this host).
    assert not info["tiny"].HasField("gpus_needed")
    [own] = [
        convert.info(e) for e in catalog.listing(models, 24 * 1024)[0] if e.model.name == "tiny"
    ]
    assert own.HasField("gpus_needed") and own.gpus_needed == 0 and own.environment == "cpu"
    assert (info["big"].environment, info["big"].backend_switched) == ("cuda", False)
    assert (info["coder"].environment, info["coder"].backend_switched) == ("", False)
    shown = catalog.detail(models, "tiny", catalog.DEFAULT_DEPLOYMENT, {"tiny": "vulkan"})
    assert shown.entry.environment == "vulkan" and "--n_gpu_layers=-1" in shown.argv
    assert dict(shown.env) == {"GGML_VK_VISIBLE_DEVICES": "0"}
    on_cpu = catalog.detail(models, "big", catalog.DEFAULT_DEPLOYMENT, {"big": "cpu"})
    assert "--n_gpu_layers=0" in on_cpu.argv and dict(on_cpu.env) == {"GREETING": "hi"}
