"""The hub's view of each node's environments (hub/envs/view.py): what agents report, bounded;
which environment a process of a backend runs from; readiness, including backends an agent runs
from a --llama-env directory; which models run from which environment (hub/envs/listing.py)."""

from __future__ import annotations

from gpufleet.v1 import agent_link_pb2 as pb
from hub.envs.listing import users
from hub.envs.view import NodeEnvs, env_from_proto, envs_from_proto


def info(name: str, state: str = "ready", *projects: str) -> pb.EnvInfo:
    backend, _, version = name.partition("-")
    return pb.EnvInfo(name=name, backend=backend, version=version, state=state,
                      projects=list(projects))  # fmt: skip


def test_a_backend_resolves_to_its_newest_ready_environment_as_the_agent_does() -> None:
    envs = NodeEnvs()
    envs.report(
        "a",
        envs_from_proto(
            [
                info("vulkan-0.3.9"),
                info("vulkan-0.3.36"),
                info("vulkan-0.3.40", "failed"),
                info("cpu-0.3.36"),
            ]
        ),
    )
    found = envs.resolve("a", "vulkan")
    assert found is not None and found.name == "vulkan-0.3.36"  # 0.3.36 > 0.3.9; failed skipped
    assert envs.ready("a", "vulkan") and envs.ready("a", "vulkan-0.3.9")
    assert not envs.ready("a", "vulkan-0.3.40") and not envs.ready("a", "rocm")
    assert not envs.ready("b", "cpu")  # a node that reported nothing


def test_a_backend_given_with_llama_env_is_ready_until_the_next_hello_says_otherwise() -> None:
    envs = NodeEnvs()
    envs.report("a", (), given=["cuda", "metal"])  # a backend the hub does not know is dropped
    assert envs.ready("a", "cuda") and not envs.ready("a", "cuda-0.3.36")
    envs.report("a", envs_from_proto([info("cpu-0.3.36")]))  # a heartbeat: given kept
    assert envs.ready("a", "cuda") and envs.ready("a", "cpu")
    envs.report("a", (), given=[])  # the agent restarted without it
    assert not envs.ready("a", "cuda")


def test_what_an_agent_reports_is_bounded_and_a_bad_entry_skipped() -> None:
    bad_time = info("cpu-0.3.36")
    bad_time.built_at.seconds = 10**12  # far out of range: the environment stays, its time not
    found = env_from_proto(bad_time)
    assert found is not None and found.built_at is None
    assert env_from_proto(info("cpu-0.3.36", "half-built")) is None
    assert (
        env_from_proto(pb.EnvInfo(name="cpu-9", backend="vulkan", version="9", state="ready"))
        is None
    )  # name and backend disagree
    many = env_from_proto(info("cpu-0.3.36", "ready", *(f"model-m{i}" for i in range(40))))
    assert many is not None and len(many.projects) == 16


def test_models_in_use_are_the_projects_the_agent_says_run_from_each_environment() -> None:
    envs = NodeEnvs()
    envs.report(
        "a",
        envs_from_proto(
            [
                info("cpu-0.3.36", "ready", "model-tiny", "model-big"),
                info("vulkan-0.3.36", "ready", "other-project"),
            ]
        ),
    )
    envs.report("b", envs_from_proto([info("cpu-0.3.36")]))
    assert users(envs) == {("a", "cpu-0.3.36"): ["big", "tiny"]}
