"""hubctl's wall time per command, as an operator feels it.

    python -m bench.cli_latency [--runs 5]

Starts a real local hub over mutual TLS (the default a user gets: `bench.common.start_hub`
with secure=True) and one agent enrolled with a join token, reporting the static inventory
`a5500-a400` so the tables have rows. hubctl uses the hub's bootstrap admin credential
through a throwaway GPUFLEET_CONFIG, as after `hubctl up`. Then it times `hubctl --help`,
`hubctl nodes`, `hubctl nodes --json` and `hubctl gpus` as fresh processes, RUNS times
each, both through the installed `hubctl` console script (the one beside this interpreter)
and as `python -m cli`, and prints the median and the slowest wall time per command.
One unrecorded `--help` per launcher first, so byte-code compilation is not timed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.common import REPO, admin_credentials, channel, ready_count, start_hub, wait
from gpufleet.v1 import hub_pb2_grpc, trust_pb2, trust_pb2_grpc

INVENTORY = REPO / "configs" / "inventories" / "a5500-a400.yaml"
COMMANDS = [["--help"], ["nodes"], ["nodes", "--json"], ["gpus"]]


def console_script() -> str:
    """The `hubctl` installed with this interpreter (not a version manager's shim)."""
    beside = Path(sys.executable).parent / "hubctl"
    found = str(beside) if beside.exists() else shutil.which("hubctl")
    if found is None:
        raise SystemExit("no hubctl console script: pip install -e . first")
    return found


def start_agent(state: Path, address: str, hub_state: Path) -> subprocess.Popen[bytes]:
    """An agent with the static inventory, joined with a fresh token; ready on return."""
    credentials = admin_credentials(hub_state)
    with channel(address, credentials) as chan:
        request = trust_pb2.CreateTokenRequest(role=trust_pb2.ROLE_AGENT, ttl_seconds=300)
        token = trust_pb2_grpc.TrustStub(chan).CreateToken(request, timeout=10).token
    agent = subprocess.Popen(
        [sys.executable, "-m", "agent", "--hub", address, "--name", "bench", "--token", token,
         "--state-dir", str(state), "--inventory", str(INVENTORY), "--log-level", "warning"],
        cwd=REPO,
    )  # fmt: skip
    try:
        with channel(address, credentials) as chan:
            wait(lambda: ready_count(hub_pb2_grpc.HubStub(chan)) == 1, 30)
    except BaseException:
        agent.terminate()
        agent.wait(30)
        raise
    return agent


def write_config(path: Path, address: str, hub_state: Path) -> None:
    pki = hub_state / "pki"
    entry = {"ca": str(pki / "ca.crt"), "cert": str(pki / "admin.crt"),
             "key": str(pki / "admin.key"), "identity": "user/admin"}  # fmt: skip
    path.write_text(yaml.safe_dump({"default": address, "hubs": {address: entry}}))


def timed(argv: list[str], env: dict[str, str]) -> float:
    began = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO)
    took = time.perf_counter() - began
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {result.returncode}: {result.stderr}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    launchers = {"hubctl": [console_script()], "python -m cli": [sys.executable, "-m", "cli"]}
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        work = Path(tmp)
        hub, address = start_hub(work / "hub", secure=True)
        agent: subprocess.Popen[bytes] | None = None
        try:
            agent = start_agent(work / "agent", address, work / "hub")
            config = work / "hubctl.yaml"
            write_config(config, address, work / "hub")
            env = {k: v for k, v in os.environ.items()
                   if k not in ("GPUFLEET_HUB", "GPUFLEET_INSECURE")}  # fmt: skip
            env["GPUFLEET_CONFIG"] = str(config)
            for launcher in launchers.values():
                timed([*launcher, "--help"], env)
            print(f"hubctl: {launchers['hubctl'][0]}; hub {address}, mutual TLS; "
                  f"{args.runs} run(s) each")  # fmt: skip
            print(f"{'COMMAND':<34} {'MEDIAN':>8} {'MAX':>8}")
            for name, launcher in launchers.items():
                for command in COMMANDS:
                    took = [timed([*launcher, *command], env) for _ in range(args.runs)]
                    label = " ".join([name, *command])
                    print(f"{label:<34} {statistics.median(took):>7.3f}s {max(took):>7.3f}s")
        finally:
            for process in (agent, hub):
                if process is not None and process.poll() is None:
                    process.terminate()
                    process.wait(30)


if __name__ == "__main__":
    main()
