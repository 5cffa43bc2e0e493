"""Launch to READY=1: how long systemd would wait for each daemon, and the RPM sizes.

    python -m bench.startup [--runs 5] [--python PATH] [--rpms DIR]
    python -m bench.startup --runs 1     # smallest, a few seconds

Each run starts a daemon the way a `Type=notify` unit does (a fresh process with
$NOTIFY_SOCKET naming a datagram socket this script binds) and times the launch to READY=1,
then SIGTERM to exit. Both run as installed, over mutual TLS. The hub: a first start (new
state dir: database migrations and a new CA) and a restart (same state dir). The agent:
joining at start with a token (`--token`), then enrolled and connected to a running hub, and
enrolled with no hub (ready once its first dial failed). `--python` runs an installed venv's
interpreter, e.g. ROOT/opt/gpufleet/venv/bin/python after `rpm --root ROOT -i`; `--rpms`
prints the sizes of the .rpm files under DIR (scripts/build-rpm --outdir DIR)."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import admin_credentials, channel, free_port, health, unwind_on_sigterm
from gpufleet.v1 import trust_pb2, trust_pb2_grpc


class Launch:
    """One daemon process with a notify socket of its own; its output goes to a log file.
    As a context manager it kills the daemon on the way out if it still runs."""

    def __init__(self, python: str, argv: list[str], workdir: Path) -> None:
        stamp = time.monotonic_ns()
        self.socket_path = workdir / f"notify-{stamp}.sock"
        self.log = workdir / f"{argv[1]}-{stamp}.log"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.socket_path))
        env = {**os.environ, "NOTIFY_SOCKET": str(self.socket_path), "WATCHDOG_USEC": "30000000"}
        if python != sys.executable:
            env.pop("PYTHONPATH", None)  # another interpreter, an installed venv: its own code
        self.began = time.monotonic()
        with self.log.open("wb") as log:
            # cwd outside the repository, so an installed venv imports its own packages.
            self.process = subprocess.Popen(
                [python, *argv], env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT
            )

    def __enter__(self) -> Launch:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.sock.close()
        self.socket_path.unlink(missing_ok=True)

    def until(self, assignment: str, timeout: float = 60) -> float:
        """Seconds from launch until a datagram carries `assignment`."""
        deadline = self.began + timeout
        while (left := deadline - time.monotonic()) > 0 and self.process.poll() is None:
            self.sock.settimeout(min(left, 0.2))
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            if assignment in data.splitlines():
                return time.monotonic() - self.began
        code = self.process.poll()
        ended = f"it exited with code {code}" if code is not None else f"not within {timeout:g} s"
        raise SystemExit(f"no {assignment}, {ended}: {self.output()}")

    def stop(self) -> float:
        """SIGTERM; seconds until the process exited."""
        began = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(60)
        if code != 0:
            raise SystemExit(f"daemon exited {code} on SIGTERM: {self.output()}")
        return time.monotonic() - began

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]


def hub_argv(state: Path, address: str, enroll: str) -> list[str]:
    return ["-m", "hub", "--listen", address, "--enroll-listen", enroll, "--state-dir",
            str(state), "--config", "/dev/null", "--grace", "2"]  # fmt: skip


def agent_argv(state: Path, hub: str, *options: str) -> list[str]:
    return ["-m", "agent", "--hub", hub, "--name", "bench", "--gpu-probe", "none",
            "--state-dir", str(state), "--config", "/dev/null", *options]  # fmt: skip


def join_token(address: str, state: Path) -> str:
    """A single-use agent token, created as the hub's bootstrap admin."""
    request = trust_pb2.CreateTokenRequest(role=trust_pb2.ROLE_AGENT, ttl_seconds=600)
    with channel(address, admin_credentials(state)) as chan:
        return str(trust_pb2_grpc.TrustStub(chan).CreateToken(request, timeout=10).token)


def measure(python: str, runs: int, work: Path) -> dict[str, list[tuple[float, float]]]:
    figures: dict[str, list[tuple[float, float]]] = {
        "hub, first start": [], "hub, restart": [], "agent, joins at start": [],
        "agent, hub up": [], "agent, no hub (retrying)": [],
    }  # fmt: skip
    for run in range(runs):
        state = work / f"hub-{run}"
        address, enroll = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        for label in ("hub, first start", "hub, restart"):
            with Launch(python, hub_argv(state, address, enroll), work) as hub:
                ready = hub.until("READY=1")
                figures[label].append((ready, hub.stop()))
        with Launch(python, hub_argv(state, address, enroll), work) as hub:
            hub.until("READY=1")
            if not health(address, admin_credentials(state)):
                raise SystemExit(f"hub said READY=1 but {address} does not serve")
            agent_state = work / f"agent-{run}"
            port = enroll.rpartition(":")[2]
            token = ["--token", join_token(address, state), "--enroll-port", port]
            nowhere = f"127.0.0.1:{free_port()}"
            for label, target, options in (
                ("agent, joins at start", address, token),
                ("agent, hub up", address, []),
                ("agent, no hub (retrying)", nowhere, []),
            ):
                with Launch(python, agent_argv(agent_state, target, *options), work) as agent:
                    ready = agent.until("READY=1")
                    figures[label].append((ready, agent.stop()))
            hub.stop()
    return figures


def rpm_sizes(directory: Path) -> None:
    rpms = sorted(directory.rglob("*.rpm"))
    if not rpms:
        raise SystemExit(f"no .rpm files under {directory}: run scripts/build-rpm --outdir DIR")
    print(f"{'package file':<48} {'size':>10} {'installed':>10}")
    for path in rpms:
        installed = subprocess.run(
            ["rpm", "-qp", "--qf", "%{SIZE}", str(path)], capture_output=True, text=True
        ).stdout
        print(f"{path.name:<48} {mib(path.stat().st_size):>10} {mib(int(installed or 0)):>10}")
    print()


def mib(size: int) -> str:
    return f"{size / 1024:.1f} KiB" if size < 1024 * 1024 else f"{size / 1024 / 1024:.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--python", default=sys.executable, help="interpreter to run them on")
    parser.add_argument("--rpms", type=Path, metavar="DIR", help="print the sizes of DIR/**.rpm")
    args = parser.parse_args()
    unwind_on_sigterm()
    if args.rpms:
        rpm_sizes(args.rpms)
    with tempfile.TemporaryDirectory(prefix="gpufleet-startup-") as tmp:
        figures = measure(args.python, args.runs, Path(tmp))
    print(f"launch to READY=1 and SIGTERM to exit, {args.runs} runs, python {args.python}")
    print(f"{'daemon':<26} {'READY median':>12} {'min':>7} {'max':>7} {'stop median':>12}")
    for label, pairs in figures.items():
        ready = [r for r, _ in pairs]
        stop = [s for _, s in pairs]
        print(f"{label:<26} {statistics.median(ready):>11.2f}s {min(ready):>6.2f}s "
              f"{max(ready):>6.2f}s {statistics.median(stop):>11.2f}s")  # fmt: skip


if __name__ == "__main__":
    main()
