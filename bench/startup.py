"""Launch to READY=1: how long systemd would wait for each daemon, and the RPM sizes.

    python -m bench.startup [--runs 5] [--python PATH] [--rpms DIR]

Each run starts a daemon the way a `Type=notify` unit does (a fresh process with
$NOTIFY_SOCKET naming a datagram socket this script binds) and times the launch to READY=1,
then SIGTERM to exit. The hub: a first start (new state dir: database migrations and a new
CA) and a restart (same state dir). The agent: connected to a running hub, and with no hub
(ready once its first dial failed). `--python` runs an installed venv's interpreter, e.g.
ROOT/opt/gpufleet/venv/bin/python after `rpm --root ROOT -i`; `--rpms` prints the sizes of
the .rpm files under DIR (scripts/build-rpm --outdir DIR).
"""

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

from bench.common import free_port, health


class Launch:
    """One daemon process with a notify socket of its own."""

    def __init__(self, python: str, argv: list[str], workdir: Path) -> None:
        self.socket_path = workdir / f"notify-{time.monotonic_ns()}.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.socket_path))
        env = {**os.environ, "NOTIFY_SOCKET": str(self.socket_path), "WATCHDOG_USEC": "30000000"}
        self.began = time.monotonic()
        # cwd outside the repository, so an installed venv imports its own packages.
        self.process = subprocess.Popen(
            [python, *argv], env=env, cwd=workdir,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip

    def until(self, assignment: str, timeout: float = 60) -> float:
        """Seconds from launch until a datagram carries `assignment`."""
        deadline = self.began + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                break
            if assignment in data.splitlines():
                return time.monotonic() - self.began
        self.process.kill()
        _, err = self.process.communicate()
        raise SystemExit(f"no {assignment} within {timeout:g} s: {err.decode()[-2000:]}")

    def stop(self) -> float:
        """SIGTERM; seconds until the process exited."""
        began = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(60)
        self.sock.close()
        self.socket_path.unlink()
        if code != 0:
            raise SystemExit(f"daemon exited {code} on SIGTERM")
        return time.monotonic() - began


def hub_argv(state: Path, address: str) -> list[str]:
    return ["-m", "hub", "--listen", address, "--state-dir", str(state), "--insecure",
            "--config", "/dev/null", "--grace", "2"]  # fmt: skip


def agent_argv(state: Path, hub: str) -> list[str]:
    return ["-m", "agent", "--hub", hub, "--name", "bench", "--gpu-probe", "none", "--insecure",
            "--state-dir", str(state), "--config", "/dev/null"]  # fmt: skip


def measure(python: str, runs: int, work: Path) -> dict[str, list[tuple[float, float]]]:
    figures: dict[str, list[tuple[float, float]]] = {
        "hub, first start": [], "hub, restart": [],
        "agent, hub up": [], "agent, no hub (retrying)": [],
    }  # fmt: skip
    for run in range(runs):
        state = work / f"hub-{run}"
        address = f"127.0.0.1:{free_port()}"
        for label in ("hub, first start", "hub, restart"):
            hub = Launch(python, hub_argv(state, address), work)
            ready = hub.until("READY=1")
            figures[label].append((ready, hub.stop()))
        hub = Launch(python, hub_argv(state, address), work)
        hub.until("READY=1")
        if not health(address):
            raise SystemExit(f"hub said READY=1 but {address} does not serve")
        nowhere = f"127.0.0.1:{free_port()}"
        for label, target in (("agent, hub up", address), ("agent, no hub (retrying)", nowhere)):
            agent = Launch(python, agent_argv(work / f"agent-{run}", target), work)
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
