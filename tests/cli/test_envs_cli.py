"""hubctl envs and models switch-backend as real processes: bad input is refused before
anything is sent (one line, exit 2, even with no hub listening), and a real hub's answers
(no environments, an empty wheel cache, unknown nodes and models) read as one line."""

from __future__ import annotations

import pytest

from tests.cli.test_bad_input import hubctl, refused
from tests.cli.test_startup import NEVER, absent, loaded
from tests.support.procs import free_port

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
