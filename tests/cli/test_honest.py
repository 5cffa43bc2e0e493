"""hubctl says what it does (issue 13, "Honest commands"), against an in-process Hub API:
--hub after the command, one credential per hub whatever its loopback name, --detach prints
the id alone, one --node form, -l refused before any call, `gpus --watch` into a pipe,
VRAM in GiB, `nodes show` with the probe's error once and the preflight findings."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from cli import credentials
from cli.main import hoist, main
from cli.output import plural
from gpufleet.v1 import hub_pb2, types_pb2
from tests.cli.fake_hub import FakeHub, serve
from tests.cli.test_operations import STORED, STREAM
from tests.support.procs import REPO

Run = tuple[int, str, str]


class RecordingHub(FakeHub):
    """Switch, Drain and Stop answer an operation id and keep the requests; GetNode answers
    a node without GPUs whose probe failed, with two preflight findings."""

    def __init__(self) -> None:
        super().__init__(STORED, STREAM)
        self.requests: list[object] = []

    def _started(self, request: object) -> hub_pb2.OperationRef:
        self.requests.append(request)
        return hub_pb2.OperationRef(id="op-1")

    def Switch(self, request: object, context: grpc.ServicerContext) -> object:
        return self._started(request)

    def Drain(self, request: object, context: grpc.ServicerContext) -> object:
        return self._started(request)

    def Stop(self, request: object, context: grpc.ServicerContext) -> object:
        return self._started(request)

    def ListNodes(self, request: hub_pb2.ListNodesRequest, context: grpc.ServicerContext) -> object:
        self.requests.append(request)
        return super().ListNodes(request, context)

    def GetNode(self, request: object, context: grpc.ServicerContext) -> object:
        return hub_pb2.Node(
            name="gpu-c", status=types_pb2.NODE_STATUS_READY, probe="nvml",
            probe_error="NVML Shared Library Not Found: install the NVIDIA driver",
            preflight=["podman is missing: install the podman package",
                       "no NVIDIA CDI spec: run nvidia-ctk cdi generate"],
        )  # fmt: skip


@pytest.fixture
def recording() -> Iterator[tuple[RecordingHub, str]]:
    servicer = RecordingHub()
    server, address = serve(servicer)
    yield servicer, address
    server.stop(None)


@pytest.fixture
def run(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    recording: tuple[RecordingHub, str],
) -> Callable[..., Run]:
    """hubctl(*argv) in this process against the recording hub; --hub goes LAST, after the
    command, as a user may put it."""
    monkeypatch.setenv("GPUFLEET_INSECURE", "1")

    def hubctl(*argv: str) -> Run:
        with pytest.raises(SystemExit) as exited:
            main([*argv, "--hub", recording[1]])
        out, err = capsys.readouterr()
        return int(exited.value.code or 0), out, err

    return hubctl


def test_hubs_own_options_may_follow_the_command() -> None:
    assert hoist(["login", "--hub", "h:1", "--token", "T"]) == [
        "--hub", "h:1", "login", "--token", "T"
    ]  # fmt: skip
    assert hoist(["nodes", "show", "--hub=h:1", "gpu-a", "--insecure"]) == [
        "--hub=h:1", "--insecure", "nodes", "show", "gpu-a"
    ]  # fmt: skip
    assert hoist(["--hub", "h:1", "nodes"]) == ["--hub", "h:1", "nodes"]
    assert hoist(["nodes", "--", "--hub", "x"]) == ["nodes", "--", "--hub", "x"]
    # Given before and after the command, the one after wins (click keeps the last).
    assert hoist(["--hub", "a:1", "gpus", "--hub", "b:2"]) == [
        "--hub", "a:1", "--hub", "b:2", "gpus"
    ]  # fmt: skip
    assert hoist(["up", "--hub", "h:1"]) == ["up", "--hub", "h:1"]  # up serves, it dials none


def test_up_refuses_hub_options_it_would_ignore(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["up", "--hub", "0.0.0.0:1"])
    assert exited.value.code == 2
    assert capsys.readouterr().err == "hubctl: No such option: --hub (see `hubctl up --help`)\n"


def test_hub_with_no_value_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["nodes", "--hub"])
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        "hubctl: --hub needs a value: HOST:PORT, e.g. --hub hub.example:7443\n"
    )


def test_loopback_names_are_one_hub_for_credentials(hubctl_config: Path) -> None:
    assert credentials.DEFAULT_HUB == "127.0.0.1:7443"  # where `hubctl up` listens
    for name in ("localhost:7443", "LOCALHOST:7443", "[::1]:7443", "127.0.0.1:7443"):
        assert credentials.same_hub(name) == "127.0.0.1:7443"
    assert credentials.same_hub("Hub.Example:7443") == "hub.example:7443"
    assert credentials.same_hub("hub.example:7444") != credentials.same_hub("hub.example:7443")
    # A config written before: its key is `localhost:...`; 127.0.0.1 finds it.
    hubctl_config.write_text("default: localhost:7443\nhubs: {'localhost:7443': {ca: /x/ca}}\n")
    assert credentials.profile("127.0.0.1:7443").ca == "/x/ca"
    # Logging in again under the other name replaces that entry instead of adding one.
    credentials.remember("127.0.0.1:7443", credentials.Profile(ca="/y/ca"))
    assert list(credentials.load()["hubs"]) == ["127.0.0.1:7443"]
    assert credentials.profile("localhost:7443").ca == "/y/ca"


def test_detach_prints_the_operation_id_alone(
    run: Callable[..., Run], recording: tuple[RecordingHub, str]
) -> None:
    for argv in (["switch", "alpha", "--node", "gpu-a"], ["drain", "--node", "gpu-a"],
                 ["stop", "--all"]):  # fmt: skip
        code, out, err = run(*argv, "--detach")
        assert (code, out) == (0, "op-1\n"), (argv, out, err)
        assert "hubctl ops watch op-1" in err
    code, out, _ = run("stop", "--all", "--detach", "--json")
    assert (code, out) == (0, '{\n  "id": "op-1"\n}\n')


def test_one_node_form_everywhere(
    run: Callable[..., Run], recording: tuple[RecordingHub, str]
) -> None:
    servicer = recording[0]
    run("switch", "alpha", "--node", "a", "--nodes", "b,c", "--detach")
    run("drain", "a", "--node", "b", "--detach")  # names as arguments too, as before
    run("stop", "--nodes", "a,b", "-l", "role=chat", "--detach")
    switched, drained, stopped = servicer.requests[-3:]
    assert isinstance(switched, hub_pb2.SwitchRequest)
    assert list(switched.targets.nodes) == ["a", "b", "c"]
    assert isinstance(drained, hub_pb2.DrainRequest)
    assert list(drained.targets.nodes) == ["a", "b"]
    assert isinstance(stopped, hub_pb2.StopRequest)
    assert list(stopped.targets.nodes) == ["a", "b"]
    assert list(stopped.targets.selector) == ["role=chat"]
    code, _, err = run("stop", "--node", "a,,b")
    assert code == 2 and "empty node name in --node" in err


def test_labels_alone_target_nodes(
    run: Callable[..., Run], recording: tuple[RecordingHub, str]
) -> None:
    code, _, _ = run("switch", "alpha", "-l", "role=chat", "-l", "zone!=b,!spot", "--detach")
    assert code == 0
    request = recording[0].requests[-1]
    assert isinstance(request, hub_pb2.SwitchRequest)
    assert list(request.targets.selector) == ["role=chat", "zone!=b", "!spot"]
    assert not request.targets.nodes and not request.targets.all
    code, _, err = run("drain")
    assert code == 2
    assert "(--node gpu-a), select them by label (-l role=chat) or use --all" in err


@pytest.mark.parametrize(
    "argv",
    [["nodes"], ["gpus"], ["status"], ["switch", "alpha", "--all"], ["drain", "--all"],
     ["stop", "--all"], ["nodes", "--node", "gpu-a"]],
)  # fmt: skip
def test_a_bad_selector_is_refused_before_any_call(argv: list[str]) -> None:
    """No hub listens at port 9: had hubctl called, it would say it cannot reach it."""
    done = subprocess.run(
        [sys.executable, "-m", "cli", *argv, "-l", "role=chat", "-l", "=x", "--hub", "127.0.0.1:9"],
        capture_output=True, text=True, timeout=60, cwd=REPO,
        env={**os.environ, "GPUFLEET_INSECURE": "1"},
    )  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (
        "hubctl: invalid label selector '=x': expected KEY=VALUE, KEY!=VALUE, KEY or !KEY "
        "(e.g. -l role=chat)\n"
    )


def test_listing_filters_by_labels_and_says_when_nothing_matches(
    run: Callable[..., Run], recording: tuple[RecordingHub, str]
) -> None:
    code, out, _ = run("nodes", "-l", "role=chat")
    request = recording[0].requests[-1]
    assert isinstance(request, hub_pb2.ListNodesRequest)
    assert list(request.selector) == ["role=chat"]
    assert code == 0 and "gpu-a" in out  # the fake hub answers gpu-a whatever it is asked
    code, out, _ = run("nodes", "--node", "gpu-z")
    assert (code, out) == (0, "No node matches --node gpu-z.\n")
    code, out, _ = run("gpus", "--node", "gpu-z", "-l", "role=chat")
    assert (code, out) == (0, "No GPU matches --node gpu-z -l role=chat.\n")


def test_vram_is_shown_in_gib(run: Callable[..., Run]) -> None:
    code, out, _ = run("gpus")
    assert code == 0 and "18.9/24 GiB" in out and " GB" not in out


def test_nodes_show_says_the_probe_error_once_and_the_preflight(run: Callable[..., Run]) -> None:
    code, out, _ = run("nodes", "show", "gpu-c")
    assert code == 0
    assert out.count("NVML Shared Library Not Found") == 1, out
    assert "No GPUs detected: NVML Shared Library Not Found: install the NVIDIA driver" in out
    lines = out.splitlines()
    heading = next(i for i, line in enumerate(lines) if line.strip() == "Preflight")
    assert "podman is missing: install the podman package" in lines[heading + 1]
    assert "no NVIDIA CDI spec: run nvidia-ctk cdi generate" in lines[heading + 2]


def test_nothing_under_preflight_when_the_agent_found_nothing() -> None:
    from cli import render

    assert render.preflight([]) is None


def test_plural() -> None:
    assert [plural(n, "certificate") for n in (0, 1, 2)] == [
        "0 certificates", "1 certificate", "2 certificates"
    ]  # fmt: skip


def test_gpus_watch_into_a_pipe_prints_a_table_per_interval(hubctl_config: Path) -> None:
    server, address = serve(FakeHub(STORED, STREAM))
    argv = [sys.executable, "-m", "cli", "gpus", "--watch", "--interval", "0.3", "--hub", address]
    env = {**os.environ, "GPUFLEET_INSECURE": "1"}
    watcher = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO,
                               env=env, text=True)  # fmt: skip
    try:
        time.sleep(3)
        watcher.send_signal(signal.SIGINT)
        out, err = watcher.communicate(timeout=20)
    finally:
        watcher.kill()
        server.stop(None)
    assert watcher.returncode == 0, err
    tables = out.count("18.9/24 GiB")
    assert tables >= 3, out  # ~10 turns in 3 s; a table after each `# time` line
    assert out.startswith("# ") and out.count("\n# ") + 1 in (tables, tables + 1), out
    assert "\x1b[" not in out and "Traceback" not in err


@pytest.mark.parametrize(
    "command", [["tokens", "list"], ["credentials", "revoke", "user/x"], ["assign", "show"]]
)
def test_a_groups_json_before_its_subcommand_is_refused_not_ignored(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--hub", "127.0.0.1:1", command[0], "--json", *command[1:]])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("hubctl: --json goes after the subcommand: ") and err.count("\n") == 1
