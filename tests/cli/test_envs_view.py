"""hubctl envs' rendering: Envs messages as dicts, the environments and wheel cache tables,
removals, and what switch-backend says before it watches."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cli import envs_view
from gpufleet.v1 import agent_link_pb2, envs_pb2, models_pb2

NOW = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
LAVAPIPE = "Vulkan0: llvmpipe (LLVM 15.0.6, 256 bits)"


def at(iso: str) -> Timestamp:
    stamp = Timestamp()
    stamp.FromJsonString(iso)
    return stamp


def node_env(node: str = "gpu-a", connected: bool = True, models: tuple[str, ...] = (),
             **fields: Any) -> envs_pb2.NodeEnv:  # fmt: skip
    base: dict[str, Any] = {"name": "vulkan-0.3.36", "backend": "vulkan", "version": "0.3.36",
                            "state": "ready"}  # fmt: skip
    info = agent_link_pb2.EnvInfo(**(base | fields))
    return envs_pb2.NodeEnv(node=node, env=info, models=list(models), connected=connected)


def lines(renderable: Table | Text, width: int = 220) -> list[str]:
    out = io.StringIO()
    Console(file=out, width=width).print(renderable)
    return [line.rstrip() for line in out.getvalue().splitlines()]


def words(renderable: Table | Text) -> list[list[str]]:
    return [line.split() for line in lines(renderable)]


def test_an_environment_as_a_dict_has_every_field_and_nulls_for_unknowns() -> None:
    ready = envs_view.env(node_env(
        gpu_offload=True, devices=[LAVAPIPE], size_bytes=3 << 29,
        built_at=at("2026-11-30T11:00:00Z"), origin="cache", key="ab" * 32,
        system_info="CPU : SSE3 = 1", models=("chat",),
    ))  # fmt: skip
    assert ready == {
        "node": "gpu-a", "connected": True, "name": "vulkan-0.3.36", "backend": "vulkan",
        "version": "0.3.36", "state": "ready", "message": "", "gpu_offload": True,
        "devices": [LAVAPIPE], "size_bytes": 3 << 29, "built_at": "2026-11-30T11:00:00Z",
        "origin": "cache", "key": "ab" * 32, "system_info": "CPU : SSE3 = 1", "models": ["chat"],
    }  # fmt: skip
    building = envs_view.env(node_env(state="building", message="compile 12/340"))
    assert building["built_at"] is None and building["origin"] is None and building["key"] is None


def test_sizes_offload_and_devices_read_shortly() -> None:
    assert envs_view.size(0) == "-"
    assert envs_view.size(350 << 20) == "350 MiB"
    assert envs_view.size(1000) == "1 MiB"
    assert envs_view.size(3 << 29) == "1.5 GiB"
    assert envs_view.device(LAVAPIPE) == "Vulkan0: llvmpipe"
    assert envs_view.device("CUDA0: NVIDIA RTX A5500 Laptop GPU with a long name") == (
        "CUDA0: NVIDIA RTX A5500 L..."
    )
    ready = envs_view.env(node_env(gpu_offload=True, devices=[LAVAPIPE]))
    assert envs_view.offload(ready) == "Vulkan0: llvmpipe"
    many = envs_view.env(node_env(gpu_offload=True, devices=[f"CUDA{i}: H200" for i in range(4)]))
    assert envs_view.offload(many) == "CUDA0: H200, CUDA1: H200 +2 more"
    assert envs_view.offload(envs_view.env(node_env(gpu_offload=True))) == "yes"
    cpu = node_env(name="cpu-0.3.36", backend="cpu", gpu_offload=False)
    assert envs_view.offload(envs_view.env(cpu)) == "no"
    assert envs_view.offload(envs_view.env(node_env(state="building", gpu_offload=True))) == "-"
    assert envs_view.offload(envs_view.env(node_env(state="failed"))) == "-"


def test_the_table_marks_down_nodes_and_shows_messages_in_their_own_column() -> None:
    found = [
        envs_view.env(node_env(
            gpu_offload=True, devices=[LAVAPIPE], size_bytes=3 << 29, origin="compiled",
            built_at=at("2026-11-30T10:00:00Z"), models=("chat", "coder"),
        )),
        envs_view.env(node_env(node="gpu-b", connected=False, name="cpu-0.3.36", backend="cpu",
                               origin="cache", size_bytes=350 << 20,
                               built_at=at("2026-11-30T11:59:30Z"))),
        envs_view.env(node_env(node="gpu-c", state="broken",
                               message="no layer was offloaded to Vulkan0 [see build.log]")),
    ]  # fmt: skip
    assert words(envs_view.envs_table(found, NOW)) == [
        ["NODE", "ENV", "BACKEND", "VERSION", "STATE", "OFFLOAD", "SIZE", "BUILT", "FROM", "USED",
         "BY", "MESSAGE"],
        ["gpu-a", "vulkan-0.3.36", "vulkan", "0.3.36", "ready", "Vulkan0:", "llvmpipe", "1.5",
         "GiB", "2h", "ago", "compiled", "here", "chat,", "coder"],
        ["gpu-b", "(down)", "cpu-0.3.36", "cpu", "0.3.36", "ready", "no", "350", "MiB", "30s",
         "ago", "from", "cache", "-"],
        ["gpu-c", "vulkan-0.3.36", "vulkan", "0.3.36", "broken", "no", "-", "-", "-", "-", "no",
         "layer", "was", "offloaded", "to", "Vulkan0", "[see", "build.log]"],
    ]  # fmt: skip
    quiet = words(envs_view.envs_table(found[:2], NOW))
    assert "MESSAGE" not in quiet[0]


def test_a_long_message_wraps_in_its_column_and_keeps_the_others_whole() -> None:
    found = [envs_view.env(node_env(state="failed", message="cmake failed: " + "x " * 80))]
    shown = lines(envs_view.envs_table(found, NOW), width=120)
    assert len(shown) > 2 and all(len(line) <= 120 for line in shown)
    assert shown[1].split()[:5] == ["gpu-a", "vulkan-0.3.36", "vulkan", "0.3.36", "failed"]


def test_an_empty_listing_says_how_to_build_one() -> None:
    assert lines(envs_view.no_envs([], [], "")) == [
        "No environment. Build one: hubctl envs build --backend cpu --node NODE"
    ]
    assert lines(envs_view.no_envs(["a", "b"], ["role=chat"], "vulkan")) == [
        "No environment matches --node a,b -l role=chat --backend vulkan. Build one: hubctl envs "
        "build --backend vulkan --node NODE"
    ]


def wheel(key: str, **parts: str) -> envs_pb2.CachedWheel:
    meta = agent_link_pb2.WheelMeta(
        key=key, filename="llama_cpp_python-0.3.36-cp311-linux_x86_64.whl", size=40 << 20,
        sha256="cd" * 32, built_on="gpu-a", built_at=at("2026-11-30T11:00:00Z"),
        parts={"version": "0.3.36", "backend": "vulkan", "arch": "x86_64", **parts},
    )  # fmt: skip
    return envs_pb2.CachedWheel(meta=meta, nodes=["gpu-a", "gpu-b"])


def test_the_wheel_cache_lists_keys_shortly_and_totals_its_size() -> None:
    reply = envs_pb2.ListWheelsResponse(
        wheels=[wheel("0123456789abcdef" * 4, toolkit="glslc 2023.2"),
                wheel("fedcba9876543210" * 4, backend="cuda", targets="86;90a")],
        total_bytes=80 << 20,
    )  # fmt: skip
    found = envs_view.cache(reply)
    assert found["total_bytes"] == 80 << 20 and found["wheels"][0]["nodes"] == ["gpu-a", "gpu-b"]
    assert found["wheels"][1]["parts"]["targets"] == "86;90a"
    assert words(envs_view.wheels_table(found["wheels"], NOW)) == [
        ["KEY", "BACKEND", "VERSION", "TOOLKIT", "TARGETS", "ARCH", "SIZE", "BUILT", "ON",
         "BUILT", "USED", "BY"],
        ["0123456789ab", "vulkan", "0.3.36", "glslc", "2023.2", "-", "x86_64", "40", "MiB",
         "gpu-a", "1h", "ago", "gpu-a,", "gpu-b"],
        ["fedcba987654", "cuda", "0.3.36", "-", "86,90a", "x86_64", "40", "MiB", "gpu-a", "1h",
         "ago", "gpu-a,", "gpu-b"],
    ]  # fmt: skip
    assert envs_view.cache_total(found) == "2 wheels, 80 MiB"
    assert envs_view.cache_total(envs_view.cache(envs_pb2.ListWheelsResponse())).startswith(
        "The wheel cache is empty: a build uploads its wheel (hubctl envs build --backend cpu"
    )


def test_removals_say_removed_or_the_nodes_word() -> None:
    reply = envs_pb2.RemoveEnvResponse(removed=[
        envs_pb2.RemovedEnv(node="gpu-a", name="vulkan-0.3.36", ok=True, message="removed"),
        envs_pb2.RemovedEnv(node="gpu-b", name="", ok=False, message="no vulkan environment\n"),
    ])  # fmt: skip
    found = envs_view.removed(reply)
    assert found[1] == {"node": "gpu-b", "name": "", "ok": False,
                        "message": "no vulkan environment\n"}  # fmt: skip
    first, second = (envs_view.removal_line(f, "vulkan") for f in found)
    assert first.plain == "gpu-a: vulkan-0.3.36: removed" and first.style == ""
    assert second.plain == "gpu-b: vulkan: no vulkan environment" and second.style == "red"


def test_switch_backend_says_instant_or_what_is_built_first() -> None:
    instant = envs_view.switched(models_pb2.SwitchBackendResponse(
        instant_switch=True, environment="vulkan-0.3.36", operation_id="op-1",
        nodes=["gpu-a", "gpu-b"],
    ))  # fmt: skip
    assert instant == {"instant_switch": True, "environment": "vulkan-0.3.36",
                       "operation_id": "op-1", "nodes": ["gpu-a", "gpu-b"],
                       "builds": []}  # fmt: skip
    assert envs_view.switch_line(instant, "chat", "vulkan", True) == (
        "instant switch: chat restarts from vulkan-0.3.36 on gpu-a, gpu-b"
    )
    kept = envs_view.switched(models_pb2.SwitchBackendResponse(
        instant_switch=True, environment="vulkan"))  # fmt: skip
    assert kept["operation_id"] is None
    assert envs_view.switch_line(kept, "chat", "vulkan", False) == (
        "instant switch: chat will run from vulkan at its next start (--no-restart: nothing "
        "restarted)"
    )
    assert envs_view.switch_line(kept, "chat", "vulkan", True) == (
        "instant switch: chat will run from vulkan at its next start (nothing runs it to restart)"
    )
    build = envs_view.switched(models_pb2.SwitchBackendResponse(
        environment="vulkan", operation_id="op-2", nodes=["gpu-a", "gpu-b"],
        builds=["gpu-b has no ready vulkan environment", "gpu-a: no vulkan environment"],
    ))  # fmt: skip
    assert envs_view.switch_line(build, "chat", "vulkan", True) == (
        "building vulkan on gpu-b, gpu-a first: gpu-b has no ready vulkan environment; gpu-a: no "
        "vulkan environment; then switching"
    )
    unnamed = envs_view.switched(models_pb2.SwitchBackendResponse(
        environment="cuda", operation_id="op-3", nodes=["gpu-a"], builds=["no cuda environment"],
    ))  # fmt: skip
    assert envs_view.switch_line(unnamed, "chat", "cuda", False) == (
        "building cuda first: no cuda environment; then associating (no restart)"
    )
