"""`hubctl up`: hub plus local agent in the foreground; Ctrl-C stops both cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from cli import credentials, demo_image
from gpufleet.tls import TLS_OPTIONS
from tests.conftest import need
from tests.support import podman
from tests.support.procs import INVENTORIES, REPO, Cluster, free_port, wait_until


def hubctl(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", "--hub", address, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


def cmdline(process: Path) -> str:
    try:
        return (process / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:  # it ended meanwhile
        return ""


def answers(url: str) -> int:
    """The HTTP status of GET `url`, 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def test_up_runs_hub_local_agent_and_gateway_and_ctrl_c_stops_them(tmp_path: Path) -> None:
    address, gateway = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli",
            "up",
            "--listen",
            address,
            "--state-dir",
            str(tmp_path),
            "--name",
            "local",
            "--inventory",
            str(INVENTORIES / "a5500-a400.yaml"),
            "--heartbeat-interval",
            "0.5",
            "--gateway-listen",
            gateway,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
    )
    try:

        def local_ready() -> bool:
            result = hubctl(address, "nodes", "--json")
            return result.returncode == 0 and [
                (n["name"], n["status"]) for n in json.loads(result.stdout)
            ] == [("local", "ready")]

        wait_until(local_ready, 60, "the local node to be ready")
        gpus = json.loads(hubctl(address, "gpus", "--json").stdout)
        assert [g["name"] for g in gpus] == ["NVIDIA RTX A5500", "NVIDIA RTX A400"]
        # The agent and the gateway joined with tokens no `ps` showed: they went in their
        # environments. The gateway enrolled (its certificate) and answers.
        for who in ("agent", "gateway"):
            found = [p for p in Path("/proc").glob("[0-9]*")
                     if str(tmp_path / who) in cmdline(p)]  # fmt: skip
            assert found and not any("gft1." in cmdline(p) for p in found), who
        assert (tmp_path / "gateway" / "tls" / "gateway.crt").exists()
        assert answers(f"http://{gateway}/healthz") == 200
        # It follows the hub (whose keys it checks): API keys required, no open mode.
        wait_until(lambda: answers(f"http://{gateway}/v1/models") == 401, 20,
                   "the gateway to refuse a request without an API key")  # fmt: skip
        assert (tmp_path / "hub" / "hub.db").exists()  # the embedded SQLite default

        # `hubctl up` set hubctl up as this hub's admin; any other client without a
        # certificate the hub issued gets no further than the TLS handshake.
        assert "user/admin (admin)" in hubctl(address, "whoami").stdout
        ca = grpc.ssl_channel_credentials((tmp_path / "hub/pki/ca.crt").read_bytes())
        anonymous = grpc.secure_channel(address, ca, options=TLS_OPTIONS)
        with anonymous, pytest.raises(grpc.RpcError):
            health_pb2_grpc.HealthStub(anonymous).Check(health_pb2.HealthCheckRequest(), timeout=5)
        with credentials.channel(address, []) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for service in ("", "gpufleet.v1.Hub", "gpufleet.v1.AgentLink"):
                reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
            reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
            [answer] = reflect.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
            )
            names = {s.name for s in answer.list_services_response.service}
            assert {"gpufleet.v1.Hub", "gpufleet.v1.AgentLink", "grpc.health.v1.Health"} <= names

        up.send_signal(signal.SIGINT)  # what Ctrl-C delivers
        output, _ = up.communicate(timeout=30)
    finally:
        if up.poll() is None:  # a failed assertion: let `up` stop its hub and agent first
            up.send_signal(signal.SIGINT)
            try:
                up.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                up.kill()
                up.communicate()
    assert up.returncode == 0, output
    assert "gpufleet is up" in output, output
    assert f"OpenAI-compatible gateway on http://{gateway}/v1" in output, output
    assert "agent stopped" in output and "hub stopped" in output, output
    assert "Traceback" not in output, output
    assert hubctl(address, "nodes").returncode == 2  # nothing left listening
    assert answers(f"http://{gateway}/healthz") == 0


def test_up_on_a_port_a_running_hub_holds_fails_and_leaves_hubctls_config(
    tmp_path: Path, hubctl_config: Path
) -> None:
    running = Cluster(tmp_path / "running", None, secure=False)
    running.start_hub()
    hubctl_config.write_text("hubs: {}\n")  # the operator's config before
    try:
        done = subprocess.run(
            [sys.executable, "-m", "cli", "up", "--listen", running.address,
             "--state-dir", str(tmp_path / "up"), "--name", "local",
             "--inventory", str(INVENTORIES / "a5500-a400.yaml")],
            capture_output=True, text=True, timeout=120, cwd=REPO,
        )  # fmt: skip
        assert running.hub.running and running.hubctl("nodes").returncode == 0
    finally:
        running.close()
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert f"cannot listen on {running.address}: address already in use" in output, output
    assert "hubctl: the hub exited with status 2" in output, output
    assert "Traceback" not in output and "gpufleet is up" not in output, output
    assert hubctl_config.read_text() == "hubs: {}\n"  # not pointed at a hub that never started


def up_until_ready(argv: list[str], address: str, log: Path) -> subprocess.Popen[bytes]:
    """`hubctl up ARGV` with its output in `log`, once its node 'local' is ready."""
    argv = [sys.executable, "-m", "cli", "up", "--listen", address, *argv]
    env = {**os.environ, **podman.env()}
    with log.open("w") as out:
        up = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env)

    def local_ready() -> bool:
        assert up.poll() is None, log.read_text()
        result = hubctl(address, "nodes", "--json")
        return result.returncode == 0 and [
            (n["name"], n["status"]) for n in json.loads(result.stdout)
        ] == [("local", "ready")]

    wait_until(local_ready, 60, "the local node to be ready")
    return up


def interrupt(up: subprocess.Popen[bytes]) -> None:
    if up.poll() is None:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(timeout=40)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()


@pytest.fixture
def demo_image_built(image: str) -> str:
    """The demo image (built as `hubctl up --demo` builds it), for `up` without --demo."""
    try:
        demo_image.ensure_image(lambda argv: podman.podman(*argv, check=False), lambda _: None)
    except demo_image.DemoUnavailable as exc:
        need(str(exc))
    return demo_image.IMAGE


def test_up_passes_http_env_gpu_probe_and_runtime(tmp_path: Path, demo_image_built: str) -> None:
    """--http reaches the hub (it serves /metrics); --gpu-probe, --gpu-runtime and --env reach
    the agent: no GPUs probed, a container started without the CDI devices this host lacks,
    and the health URL and port that --env moved answer."""
    address, metrics, port = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}", free_port()
    log = tmp_path / "up.log"
    up = up_until_ready(
        ["--state-dir", str(tmp_path / "state"), "--name", "local", "--heartbeat-interval",
         "0.5", "--no-gateway", "--configs", str(REPO / "configs" / "demo"), "--gpu-probe", "none",
         "--gpu-runtime", "none", "--http", metrics, "--env", f"DEMO_LLM_PORT={port}",
         "--env", "DEMO_LLM_LOAD_DELAY=0.5"],
        address, log,
    )  # fmt: skip
    try:
        with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=5) as reply:
            assert "gpufleet_connected_agents 1.0" in reply.read().decode()
        assert json.loads(hubctl(address, "gpus", "--json").stdout) == []
        done = hubctl(address, "switch", "demo-chat", "--node", "local")
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"http://127.0.0.1:{port}/cgi-bin/health" in done.stdout, done.stdout
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/cgi-bin/health", timeout=5) as r:
            assert r.read().decode().startswith("ready ai-llm")
        assert hubctl(address, "stop", "--all").returncode == 0
        assert podman.containers("gf-local-") == []
    finally:
        interrupt(up)
        podman.remove_projects("gf-local-")
    output = log.read_text()
    assert up.returncode == 0, output
    assert f"metrics on http://{metrics}/metrics" in output, output
    assert "GPU inventory (none)" in output, output
    assert "OpenAI-compatible gateway" not in output, output  # --no-gateway


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--env", "NOEQUALS"], "invalid --env 'NOEQUALS': expected KEY=VALUE"),
        (["--env", "1X=y"], "invalid --env '1X=y': expected KEY=VALUE"),
        (["--http", "9464"], "invalid --http '9464': expected HOST:PORT"),
        (["--http", "127.0.0.1:99999"], "invalid --http '127.0.0.1:99999'"),
        (["--listen", "localhost"], "invalid --listen 'localhost'"),
        (["--gateway-listen", "8080"], "invalid --gateway-listen '8080': expected HOST:PORT"),
        (["--gateway-listen", "127.0.0.1:7443"],
         "--gateway-listen 127.0.0.1:7443 is the --listen address"),
        (["--gpu-runtime", "cuda"], "Invalid value for '--gpu-runtime'"),
        (["--gpu-probe", "magic"], "Invalid value for '--gpu-probe'"),
        (["--gpu-probe", "nvml", "--inventory", str(INVENTORIES / "h100x8.yaml")],
         "--inventory reports GPUs from a file, which --gpu-probe nvml does not read"),
        (["--gpu-probe", "static"], "--gpu-probe static needs --inventory FILE"),
        (["--inventory", "/nonexistent.yaml"], "--inventory /nonexistent.yaml: no such file"),
        (["--demo", "--configs", "/nonexistent"], "--configs /nonexistent: no such directory"),
    ],
)  # fmt: skip
def test_up_refuses_bad_options_in_one_line_and_starts_nothing(
    tmp_path: Path, args: list[str], says: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cli", "up", "--state-dir", str(tmp_path / "state"), *args],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 2, done
    assert done.stderr.startswith(f"hubctl: {says}") and done.stderr.count("\n") == 1, done.stderr
    assert done.stdout == ""
    assert not (tmp_path / "state").exists()
