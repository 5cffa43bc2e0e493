"""hubctl starts fast: each command loads only what it uses (and no pydantic for plain
option values), while bad values still get Typer's one-line usage errors."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.coercion import SLOW, plain
from tests.cli.fake_hub import FakeHub, serve
from tests.cli.test_operations import STORED, STREAM
from tests.support.procs import REPO

# Runs hubctl, then lists the modules it loaded on the last line of stderr.
REPORT = """
import atexit, sys
atexit.register(lambda: print("MODULES", *sorted(sys.modules), file=sys.stderr))
from cli.main import main
main(sys.argv[1:])
"""
NEVER = ["cryptography", "pydantic", "agent", "gpufleet.enroll", "gpufleet.tls",
         "gpufleet.v1.trust_pb2", "gpufleet.v1.assign_pb2", "rich.live", "rich.markdown",
         "typer.rich_utils"]  # fmt: skip


@pytest.fixture
def hub(hubctl_config: Path) -> Iterator[str]:
    """A fake hub, in hubctl's config as the default (plaintext) hub."""
    server, address = serve(FakeHub(STORED, STREAM))
    hubctl_config.write_text(f"default: '{address}'\nhubs: {{'{address}': {{insecure: true}}}}\n")
    yield address
    server.stop(None)


def loaded(*argv: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    done = subprocess.run([sys.executable, "-c", REPORT, *argv], capture_output=True, text=True,
                          timeout=60, cwd=REPO)  # fmt: skip
    *errors, modules = done.stderr.splitlines()
    done.stderr = "\n".join(errors)
    return done, set(modules.split()[1:])


def absent(modules: set[str], *names: str) -> list[str]:
    """Those of `names` (packages included) that were loaded."""
    return [m for m in modules for name in names if m == name or m.startswith(f"{name}.")]


def test_help_loads_no_grpc_rich_or_stubs() -> None:
    done, modules = loaded("--help")
    assert done.returncode == 0 and "switch" in done.stdout
    assert absent(modules, *NEVER, "grpc", "rich", "yaml", "gpufleet.v1") == []


def test_a_groups_help_loads_none_of_them_either() -> None:
    done, modules = loaded("models", "--help")
    assert done.returncode == 0 and "convert" in done.stdout
    # (yaml is hubctl's config file, read for the default hub as for every group)
    assert absent(modules, *NEVER, "grpc", "rich", "gpufleet.v1", "cli.models_view") == []


@pytest.mark.parametrize("argv", [["nodes"], ["nodes", "--json"], ["gpus"]])
def test_listings_load_only_the_hub_stubs(hub: str, argv: list[str]) -> None:
    done, modules = loaded(*argv)
    assert done.returncode == 0, done.stderr
    assert "gpu-a" in done.stdout
    assert {"grpc", "gpufleet.v1.hub_pb2"} <= modules
    assert absent(modules, *NEVER) == []


def test_an_explicit_hub_option_needs_no_pydantic(hub: str) -> None:
    done, modules = loaded("--hub", hub, "gpus", "--interval", "0.5")
    assert done.returncode == 0, done.stderr
    assert absent(modules, "pydantic") == []


def test_node_and_selector_options_need_no_pydantic(hub: str) -> None:
    done, modules = loaded("nodes", "-l", "role=chat", "--node", "gpu-a,gpu-b", "--hub", hub)
    assert done.returncode == 0, done.stderr
    assert absent(modules, "pydantic") == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["gpus", "--interval", "0.1"], "Invalid value for '--interval'"),
     (["ops", "--limit", "zero"], "Invalid value for '--limit'"),
     (["switch", "alpha", "--all", "--serial", "-1"], "Invalid value for '--serial'")],
)  # fmt: skip
def test_bad_values_still_get_typers_usage_error(argv: list[str], message: str) -> None:
    done, _ = loaded(*argv)
    assert done.returncode == 2 and message in done.stderr
    assert "Traceback" not in done.stderr


class Info:
    def __init__(self, low: float | None = None, parser: object = None) -> None:
        self.min, self.max, self.clamp, self.parser = low, None, False, parser


def test_plain_values() -> None:
    assert plain(str, Info(), None, False) is None
    assert plain(list[str], Info(), None, True) == ()
    assert plain(str, Info(), "gpu-a", False) == "gpu-a"
    assert plain(int, Info(0), "5", False) == 5
    assert plain(float, Info(0.2), "0.5", False) == 0.5
    assert plain(float, Info(0.2), 2.0, False) == 2.0
    assert plain(float, Info(), "1e3", False) == 1000.0
    assert plain(list[str], Info(), ("a", "b"), True) == ["a", "b"]


def test_anything_else_is_left_to_typer() -> None:
    for annotation, value, info in [
        (int, "5.0", Info()), (int, "-1", Info(0)), (float, "abc", Info()),
        (float, "1e-1", Info(0.2)), (int, True, Info()), (Path, "x", Info()),
        (str, "x", Info(parser=str)),
    ]:  # fmt: skip
        assert plain(annotation, info, value, False) is SLOW
    assert plain(list[int], Info(), ("1",), True) is SLOW
    assert plain(list[str], Info(parser=str), ("a",), True) is SLOW


def test_hubctl_dials_the_hub_by_the_name_gpufleet_tls_certifies() -> None:
    from cli.credentials import TLS_OPTIONS
    from gpufleet.tls import TLS_OPTIONS as SHARED

    assert TLS_OPTIONS == SHARED
