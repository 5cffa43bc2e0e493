"""The daemons speak sd_notify to a socket the test binds, as systemd's would be."""

from __future__ import annotations

import os
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpufleet.sdnotify import Notifier, socket_address, watchdog_interval
from tests.support.procs import Daemon, Hub, free_port

WATCHDOG_USEC = 400_000  # systemd would say WatchdogSec=0.4: pings every 0.2 s


class NotifySocket:
    """An AF_UNIX datagram socket that collects notifications."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(socket_address(name))
        self.seen: list[dict[str, str]] = []

    def env(self) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.name, "WATCHDOG_USEC": str(WATCHDOG_USEC)}

    def wait_for(self, key: str, value: str | None = None, timeout: float = 30) -> dict[str, str]:
        """The next datagram that assigns `key` (to `value`, if given)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                break
            message = dict(line.split("=", 1) for line in data.decode().splitlines())
            self.seen.append(message)
            if key in message and (value is None or message[key] == value):
                return message
        raise AssertionError(f"no {key}={value or '*'} within {timeout:g} s; saw {self.seen}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(params=["path", "abstract"])
def notify(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NotifySocket]:
    if request.param == "path":
        name = str(tmp_path / "notify.sock")
    else:
        name = f"@gpufleet-test-{os.getpid()}-{time.monotonic_ns()}"
    sock = NotifySocket(name)
    yield sock
    sock.close()


def start_hub(tmp_path: Path, env: dict[str, str] | None = None) -> Hub:
    address = f"127.0.0.1:{free_port()}"
    argv = ["-m", "hub", "--listen", address, "--state-dir", str(tmp_path / "hub")]
    argv += ["--config", "/dev/null", "--grace", "2", "--insecure"]
    hub = Hub("hub", argv, tmp_path / "hub.log", env=env or {}, address=address)
    hub.start()
    return hub


def agent(tmp_path: Path, hub: str, env: dict[str, str]) -> Daemon:
    argv = ["-m", "agent", "--hub", hub, "--name", "notify-test", "--gpu-probe", "none"]
    argv += ["--state-dir", str(tmp_path / "agent"), "--config", "/dev/null", "--insecure"]
    return Daemon("agent", argv, tmp_path / "agent.log", env=env).start()


def stops_cleanly(daemon: Daemon, notify: NotifySocket) -> None:
    assert daemon.process is not None
    daemon.process.send_signal(15)
    notify.wait_for("STOPPING", "1", timeout=10)
    assert daemon.terminate(timeout=20) == 0, daemon.log()


def test_hub_is_ready_once_listening_feeds_the_watchdog_and_stops(
    tmp_path: Path, notify: NotifySocket
) -> None:
    hub = start_hub(tmp_path, notify.env())
    try:
        ready = notify.wait_for("READY", "1")
        assert ready["STATUS"] == f"listening on {hub.address}"
        hub.wait_serving(timeout=1)  # READY=1 came once the port listens
        began = time.monotonic()
        notify.wait_for("WATCHDOG", "1", timeout=5)
        notify.wait_for("WATCHDOG", "1", timeout=5)
        assert time.monotonic() - began < WATCHDOG_USEC / 1e6 * 2
        stops_cleanly(hub, notify)
        assert "hub stopped" in hub.log()
    finally:
        hub.cleanup()


def test_agent_is_ready_when_its_first_dial_fails_and_it_retries(
    tmp_path: Path, notify: NotifySocket
) -> None:
    hub = f"127.0.0.1:{free_port()}"  # nothing listens there
    daemon = agent(tmp_path, hub, notify.env())
    try:
        ready = notify.wait_for("READY", "1")
        assert ready["STATUS"] == f"cannot reach hub {hub}; retrying"
        notify.wait_for("WATCHDOG", "1", timeout=5)
        notify.wait_for("WATCHDOG", "1", timeout=5)
        stops_cleanly(daemon, notify)
    finally:
        daemon.cleanup()


def test_agent_is_ready_when_connected(tmp_path: Path, notify: NotifySocket) -> None:
    hub = start_hub(tmp_path).wait_serving()
    daemon = agent(tmp_path, hub.address, notify.env())
    try:
        ready = notify.wait_for("READY", "1")
        assert ready["STATUS"] == f"connected to hub {hub.address}"
        notify.wait_for("WATCHDOG", "1", timeout=5)
        stops_cleanly(daemon, notify)
    finally:
        daemon.cleanup()
        hub.terminate()
        hub.cleanup()


def test_gateway_is_ready_once_listening_feeds_the_watchdog_and_stops(
    tmp_path: Path, notify: NotifySocket
) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text("models:\n  - name: tiny\n    endpoints: [http://127.0.0.1:9]\n")
    listen = f"127.0.0.1:{free_port()}"
    argv = ["-m", "gateway", "--routes", str(routes), "--open", "--listen", listen]
    argv += ["--config", "/dev/null", "--state-dir", str(tmp_path / "gateway")]
    gateway = Daemon("gateway", argv, tmp_path / "gateway.log", env=notify.env()).start()
    try:
        ready = notify.wait_for("READY", "1")
        assert ready["STATUS"] == f"listening on http://{listen}"
        with urllib.request.urlopen(f"http://{listen}/healthz", timeout=1) as reply:
            assert reply.status == 200  # READY=1 came once the port listens
        began = time.monotonic()
        notify.wait_for("WATCHDOG", "1", timeout=5)
        notify.wait_for("WATCHDOG", "1", timeout=5)
        assert time.monotonic() - began < WATCHDOG_USEC / 1e6 * 2
        stops_cleanly(gateway, notify)
    finally:
        gateway.cleanup()


def test_outside_systemd_nothing_is_sent_and_children_never_see_the_socket() -> None:
    env = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1", "PATH": "/"}
    notifier = Notifier.from_environment(env)
    assert env == {"PATH": "/"}  # removed, so podman and conmon do not write to it
    assert notifier.address == "@x"
    assert notifier.watchdog_s is None  # the watchdog belongs to PID 1, not to us
    assert Notifier.from_environment({}).send("READY=1") is False
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}, os.getpid()) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, os.getpid()) is None
