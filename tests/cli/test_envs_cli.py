"""hubctl envs and models switch-backend as real processes: bad input is refused before
anything is sent (one line, exit 2, even with no hub listening), and a real hub's answers
(no environments, an empty wheel cache, unknown nodes and models) read as one line."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from google.protobuf import json_format

from agent.envs.record import EnvRecord
from agent.envs.store import EnvStore
from gpufleet.v1 import agent_link_pb2
from hub.envs.wheels import WheelStore, wheel_from_proto
from tests.cli.test_bad_input import hubctl, refused
from tests.cli.test_startup import NEVER, absent, loaded
from tests.support.envs import BuiltEnv
from tests.support.procs import Cluster, free_port, wait_until

FOUR = "use cuda, vulkan, rocm, cpu"

LOCAL = [
    (["envs", "--backend", "metal"], f"--backend 'metal' is not a backend: {FOUR}"),
    (["envs", "build", "--backend", "", "--all"], f"--backend (empty) is not a backend: {FOUR}"),
    (["envs", "-l", "=chat"], "selector"),
    (["envs", "--node", "a,,b"], "empty node name in --node"),
    (["envs", "--json", "cache"], "--json goes after the subcommand: hubctl envs cache --json"),
    (["envs", "--node", "a", "logs", "cpu", "--node", "a"], "go after the subcommand"),
    (["envs", "build", "--all"], "Missing option '--backend'"),
    (["envs", "build", "--backend", "opencl", "--all"], "--backend 'opencl' is not a backend"),
    (["envs", "build", "--backend", "cpu"], "name the nodes (--node gpu-a)"),
    (["envs", "build", "--backend", "cpu", "--node", "a", "--all"], "not both"),
    (["envs", "build", "--backend", "cpu", "--all", "--version", "latest"],
     "--version 'latest' is not a llama-cpp-python version"),
    (["envs", "build", "--backend", "cuda", "--all", "--target", "86,sm_90"],
     "--target 'sm_90' is not a GPU target"),
    (["envs", "build", "--backend", "rocm", "--all", "--target", "gfx1100,"],
     "is not a GPU target"),
    (["envs", "logs", "metal", "--node", "a"], "'metal' is not an environment"),
    (["envs", "logs", "cpu-", "--node", "a"], "'cpu-' is not an environment"),
    (["envs", "logs", "cpu"], "Missing option '--node'"),
    (["envs", "logs", "cpu", "--node", "a,b"], "--node takes one node name"),
    (["envs", "logs", "cpu", "--node", "a", "--lines", "0"], "Invalid value for '--lines'"),
    (["envs", "rm", "vulkan"], "name the nodes (--node gpu-a)"),
    (["envs", "rm", "vulkan-0.3.36; rm -rf /", "--all"], "is not an environment"),
    (["envs", "rm", "x" * 5000, "--all"], "is not an environment"),
    (["envs", "cache", "rm", "abc123"], "'abc123' is not a wheel key: give at least its first 8"),
    (["envs", "cache", "rm", "g" * 12], "is not a wheel key"),
    (["models", "switch-backend", "chat"], "Missing option '--backend'"),
    (["models", "switch-backend", "chat", "--backend", "metal"], FOUR),
    (["models", "switch-backend", "chat", "--backend", "cpu", "--version", "1 2"],
     "is not a llama-cpp-python version"),
    (["models", "switch-backend", "chat", "--backend", "cpu", "--node", "a", "--all"], "not both"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "fragment"), LOCAL, ids=[" ".join(a)[:48] for a, _ in LOCAL])
def test_bad_input_is_refused_before_anything_is_sent(argv: list[str], fragment: str) -> None:
    """No hub listens at the address: a command that tried to call one would say so."""
    result = hubctl("--hub", f"127.0.0.1:{free_port()}", "--insecure", *argv)
    refused(result, fragment)
    assert result.returncode == 2, result.stderr
    assert "cannot reach hub" not in result.stderr
    assert len(result.stderr) < 400, result.stderr[:400]


def test_the_new_commands_are_listed_in_help_which_loads_no_grpc_rich_or_stubs() -> None:
    shown, modules = loaded("envs", "--help")
    assert shown.returncode == 0
    # (yaml is hubctl's config file, read for the default hub as for every group)
    assert absent(modules, *NEVER, "grpc", "rich", "gpufleet.v1", "cli.envs_view") == []
    for command in ("build", "logs", "rm", "cache"):
        assert f"  {command} " in shown.stdout, shown.stdout
    models = hubctl("models", "--help")
    assert models.returncode == 0 and "switch-backend" in models.stdout, models.stdout


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A real hub with no agent."""
    fleet = Cluster(tmp_path_factory.mktemp("envs-bare"), None, secure=False)
    fleet.start_hub()
    yield fleet
    fleet.close()


def test_a_hub_with_no_agent_lists_nothing_and_says_how_to_build(bare: Cluster) -> None:
    shown = bare.hubctl("envs")
    assert shown.stdout.strip() == (
        "No environment. Build one: hubctl envs build --backend cpu --node NODE"
    )
    assert bare.json("envs") == []
    assert bare.json("envs", "--backend", "vulkan") == []
    cache = bare.hubctl("envs", "cache")
    assert cache.stdout.strip().startswith("The wheel cache is empty: a build uploads its wheel")
    assert bare.json("envs", "cache") == {"wheels": [], "total_bytes": 0}


def test_switch_backend_with_nothing_running_only_associates(bare: Cluster) -> None:
    """qwen3-8b-gguf (configs/models, cuda in its definition) runs nowhere: instant, no
    operation; back to cuda the association is forgotten."""
    said = bare.hubctl("models", "switch-backend", "qwen3-8b", "--backend", "Vulkan")
    assert said.stdout == (
        "instant switch: qwen3-8b will run from vulkan at its next start (nothing runs it to "
        "restart)\n"
    )
    kept = bare.hubctl("models", "switch-backend", "qwen3-8b", "--backend", "vulkan",
                       "--no-restart")  # fmt: skip
    assert "(--no-restart: nothing restarted)" in kept.stdout
    assert bare.json("models", "switch-backend", "qwen3-8b", "--backend", "cuda") == {
        "instant_switch": True, "environment": "cuda", "operation_id": None, "nodes": [],
        "builds": [],
    }  # fmt: skip


HUB_REFUSALS = [
    (["envs", "--node", "nowhere"], "unknown node nowhere"),
    (["envs", "build", "--backend", "cpu", "--node", "nowhere"], "unknown node nowhere"),
    (["envs", "build", "--backend", "cpu", "--node", "nowhere", "--detach"], "unknown node"),
    (["envs", "rm", "cpu", "--node", "nowhere"], "unknown node nowhere"),
    (["envs", "logs", "cpu", "--node", "nowhere"], "no node named 'nowhere'"),
    (["envs", "cache", "rm", "deadbeef"], "deadbeef"),
    (["models", "switch-backend", "nope", "--backend", "cpu"], "model 'nope' not found"),
    (["models", "switch-backend", "llama3-8b", "--backend", "cpu"], "llama.cpp models only"),
    (["models", "switch-backend", "qwen3-8b", "--backend", "cpu", "--node", "x"],
     "unknown node x"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "fragment"), HUB_REFUSALS, ids=[" ".join(a)[:48] for a, _ in HUB_REFUSALS]
)
def test_the_hubs_refusals_are_one_line(bare: Cluster, argv: list[str], fragment: str) -> None:
    result = bare.hubctl(*argv, check=False)
    refused(result, fragment)
    assert result.returncode == 1, result.stderr


def agent_state(root: Path, cpu_env: BuiltEnv) -> Path:
    """An agent's state dir holding the real CPU environment (copied) and a Vulkan one whose
    build failed, as the agent's own store writes them."""
    state = root / "agents" / "gpu-a"
    store = EnvStore(state)
    shutil.copytree(cpu_env.directory, store.directory(cpu_env.record.name), symlinks=True)
    failed = EnvRecord("vulkan-0.3.36", "vulkan", "0.3.36", "failed",
                       message="preflight: glslc not found: install Debian's glslc")  # fmt: skip
    store.write(failed)
    store.log_file(failed.name).write_text("preflight vulkan\nglslc: not found\n")
    return state


def test_an_agents_environments_listed_read_removed_and_shown_down(
    tmp_path: Path, cpu_env: BuiltEnv
) -> None:
    cpu = cpu_env.record.name
    fleet = Cluster(tmp_path, None, secure=False)
    key = seed_wheel_cache(tmp_path / "hub" / "wheels", cpu_env)
    fleet.start_hub()
    try:
        state = agent_state(tmp_path, cpu_env)
        agent = fleet.agent("gpu-a").start()
        fleet.wait_status({"gpu-a": "ready"})
        found = wait_until(lambda: len(fleet.json("envs")) == 2 and fleet.json("envs"), 20,
                           "both environments listed")  # fmt: skip
        by_name = {e["name"]: e for e in found}
        assert by_name[cpu]["state"] == "ready" and by_name[cpu]["origin"] == "compiled"
        assert by_name[cpu]["connected"] and by_name[cpu]["gpu_offload"] is False
        assert by_name["vulkan-0.3.36"]["state"] == "failed"
        table = fleet.hubctl("envs").stdout.splitlines()
        assert table[0].split() == ["NODE", "ENV", "BACKEND", "VERSION", "STATE", "OFFLOAD",
                                    "SIZE", "BUILT", "FROM", "USED", "BY", "MESSAGE"]  # fmt: skip
        row = next(line for line in table if cpu in line).split()
        assert row[:6] == ["gpu-a", cpu, "cpu", cpu_env.record.version, "ready", "no"]
        assert row[7] == "MiB" and "compiled here" in " ".join(row)
        failed = next(line for line in table if "vulkan-0.3.36" in line)
        assert "failed" in failed and "install Debian's glslc" in failed
        assert [e["name"] for e in fleet.json("envs", "--backend", "vulkan")] == ["vulkan-0.3.36"]

        log = fleet.hubctl("envs", "logs", "vulkan", "--node", "gpu-a")
        assert log.stdout == "preflight vulkan\nglslc: not found\n"
        tail = fleet.json("envs", "logs", cpu, "--node", "gpu-a", "--lines", "2")
        assert tail["node"] == "gpu-a" and tail["name"] == cpu
        assert tail["log"].strip() and len(tail["log"].splitlines()) <= 2, tail
        assert store_log(state, cpu).rstrip().endswith(tail["log"].rstrip()), tail

        built(fleet, cpu)

        wheel_cache(fleet, key, cpu_env.record.version)

        removed = fleet.hubctl("envs", "rm", "vulkan-0.3.36", "--node", "gpu-a")
        assert removed.stdout.startswith("gpu-a: vulkan-0.3.36: "), removed.stdout
        assert not EnvStore(state).directory("vulkan-0.3.36").exists()
        # (the failed rocm build's record goes with the agent's next report)
        wait_until(lambda: [e["name"] for e in fleet.json("envs")] == [cpu], 20, "only " + cpu)

        agent.terminate()
        fleet.wait_status({"gpu-a": "down"})
        down = fleet.hubctl("envs").stdout.splitlines()
        assert down[1].split()[:3] == ["gpu-a", "(down)", cpu], down
        assert fleet.json("envs")[0]["connected"] is False
    finally:
        fleet.close()


def seed_wheel_cache(root: Path, cpu_env: BuiltEnv) -> str:
    """The hub's wheel cache holding the session's CPU wheel, put there by the hub's own
    store as an upload would (the wheel of the environment gpu-a reports)."""
    source = cpu_env.root / "wheels" / cpu_env.record.key
    wheel = wheel_from_proto(json_format.Parse((source / "meta.json").read_text(),
                                               agent_link_pb2.WheelMeta()))  # fmt: skip
    data = (source / wheel.filename).read_bytes()

    async def chunks() -> AsyncIterator[bytes]:
        for at in range(0, len(data), 1 << 20):
            yield data[at : at + (1 << 20)]

    store = WheelStore(root)
    store.prepare()
    asyncio.run(store.put(wheel, chunks()))
    return wheel.key


def wheel_cache(fleet: Cluster, key: str, version: str) -> None:
    """The cached wheel listed with the node whose environment came from it, then removed by
    a key prefix; a second removal is refused."""
    found = fleet.json("envs", "cache")
    [wheel] = found["wheels"]
    assert wheel["key"] == key and wheel["nodes"] == ["gpu-a"], wheel
    assert wheel["parts"]["backend"] == "cpu" and found["total_bytes"] == wheel["size_bytes"]
    table = fleet.hubctl("envs", "cache").stdout.splitlines()
    assert table[0].split() == ["KEY", "BACKEND", "VERSION", "TOOLKIT", "TARGETS", "ARCH", "SIZE",
                                "BUILT", "ON", "BUILT", "USED", "BY"]  # fmt: skip
    assert table[1].split()[:6] == [key[:12], "cpu", version, "-", "-", wheel["parts"]["arch"]]
    assert table[1].split()[-1] == "gpu-a" and table[-1].startswith("1 wheel, "), table
    removed = fleet.hubctl("envs", "cache", "rm", key[:10].upper())
    assert removed.stdout.startswith(f"removed wheel {key[:12]} (llama-cpp-python {version} cpu")
    assert fleet.json("envs", "cache") == {"wheels": [], "total_bytes": 0}
    refused(fleet.hubctl("envs", "cache", "rm", key[:10], check=False), key[:10])


def store_log(state: Path, name: str) -> str:
    return EnvStore(state).log_file(name).read_text()


def built(fleet: Cluster, cpu: str) -> None:
    """A build of what is ready already, followed live, as JSON and detached; a preflight
    that fails exits 1 with the node's line in the recap."""
    live = fleet.hubctl("envs", "build", "--backend", "cpu", "--node", "gpu-a")
    lines = live.stdout.splitlines()
    assert lines[0].startswith("operation "), lines
    assert any(line.startswith("RECAP env-build cpu") for line in lines), lines
    assert any(line.split()[:2] == ["gpu-a", "ok"] and cpu in line for line in lines), lines
    final = fleet.json("envs", "build", "--backend", "cpu", "--node", "gpu-a")
    assert final["kind"] == "env-build" and final["status"] == "succeeded", final
    detached = fleet.hubctl("envs", "build", "--backend", "cpu", "--all", "--detach")
    operation_id = detached.stdout.strip()
    assert operation_id and "\n" not in operation_id, detached.stdout
    assert f"hubctl ops watch {operation_id}" in detached.stderr
    watched = fleet.json("ops", "watch", operation_id)
    assert watched["status"] == "succeeded", watched
    if shutil.which("hipcc") is None:  # ROCm's compiler: its preflight fails here
        failed = fleet.hubctl("envs", "build", "--backend", "rocm", "--node", "gpu-a", "--check",
                              check=False)  # fmt: skip
        assert failed.returncode == 1, failed.stdout + failed.stderr
        assert "[check mode: nothing changed]" in failed.stdout
        assert any(line.split()[:2] == ["gpu-a", "failed"] for line in failed.stdout.splitlines())
        # A backend switch that must build first says so, then follows that operation.
        switch = ["models", "switch-backend", "qwen3-8b", "--backend", "rocm", "--node", "gpu-a"]
        said = fleet.hubctl(*switch, check=False)
        lines = said.stdout.splitlines()
        assert said.returncode == 1, said.stdout + said.stderr
        assert lines[0].startswith("building rocm on gpu-a first: "), lines
        assert lines[0].endswith("; then switching") and lines[1].startswith("operation "), lines
        assert any(line.startswith("RECAP backend-switch") for line in lines), lines
        answer = fleet.hubctl(*switch, "--json", check=False)
        assert answer.returncode == 1, answer.stderr
        found = json.loads(answer.stdout)
        assert found["instant_switch"] is False and found["environment"] == "rocm", found
        assert found["nodes"] == ["gpu-a"] and found["builds"], found
        assert found["operation"]["id"] == found["operation_id"], found
        assert found["operation"]["status"] == "failed", found
