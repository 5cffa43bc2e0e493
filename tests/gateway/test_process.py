"""The gpufleet-gateway process: started with --routes, serving, stopped with SIGTERM while
a request is in flight; every bad flag is one line and exit 2."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.main import main
from tests.gateway.support import Upstream, post, upstream

ROOT = Path(__file__).resolve().parents[2]


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "GPUFLEET_JOIN_TOKEN"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "proto"), str(ROOT)])
    return env


async def start(*args: str) -> tuple[asyncio.subprocess.Process, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", *args, cwd=ROOT, env=environment(),
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    while True:
        line = (await asyncio.wait_for(process.stderr.readline(), 30)).decode()
        assert line, "the gateway exited before it was listening"
        if line.startswith("gateway listening on "):
            return process, line.split()[-1]


def test_the_process_serves_routes_and_drains_on_sigterm(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with upstream(Upstream("a", slow=True)) as up:
            routes = tmp_path / "routes.yaml"
            routes.write_text(f"models:\n  - name: tiny\n    endpoints: [{up.url}]\n")
            process, url = await start("--routes", str(routes), "--open", "--listen",
                                       "127.0.0.1:0", "--log-level", "warning")  # fmt: skip
            try:
                request = asyncio.ensure_future(
                    post(f"{url}/v1/chat/completions", {"model": "tiny", "messages": []})
                )
                await asyncio.wait_for(up.arrived.wait(), 10)
                process.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.3)
                assert process.returncode is None  # still finishing the request in flight
                up.release.set()
                status, _, body = await asyncio.wait_for(request, 10)
                assert status == 200 and "from a" in str(body)
                assert await asyncio.wait_for(process.wait(), 15) == 0
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--listen", "nowhere"], "--listen 'nowhere' is not HOST:PORT"),
        (["--listen", "127.0.0.1:70000"], "port 70000 is out of range"),
        (["--max-queue", "0"], "must be at least 1"),
        (["--max-body", "x"], "expected a whole number"),
        (["--log-level", "loud"], "invalid choice: 'loud'"),
        (["--routes", "r.yaml"], "add --open"),
        (["--routes", "r.yaml", "--open", "--hub", "h:1"], "exclude each other"),
        (["--open", "--listen", "0.0.0.0:8080"], "add --open-on-network"),
        (["--routes", "missing.yaml", "--open"], "cannot read --routes missing.yaml"),
        (["--routes", "r.yaml", "--open", "--default-model", "x"], "'x' is not a model of r.yaml"),
        (["--state-dir", "{tmp}"], "not enrolled yet: pass --token-file"),
        (["--state-dir", "{tmp}", "--token", "garbage"], "token"),
        (["--state-dir", "{tmp}", "--token-file", "{tmp}/none"], "cannot read --token-file"),
        (["--state-dir", "{tmp}", "--hub", "nohost"], "--hub 'nohost' is not HOST:PORT"),
        (["--state-dir", "{tmp}", "--token", "t", "--name", "a b"], "invalid --name 'a b'"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.delenv("GPUFLEET_JOIN_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.yaml").write_text("models:\n  - name: tiny\n")
    with pytest.raises(SystemExit) as exit_:
        main([arg.replace("{tmp}", str(tmp_path / "state")) for arg in argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gpufleet-gateway: "), err
    assert message in err


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text("models:\n  - name: tiny\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "gateway", "--routes", str(routes), "--open", "--listen",
             f"127.0.0.1:{port}"], cwd=ROOT, env=environment(), capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
    assert done.returncode == 1
    assert (
        done.stderr
        == f"gpufleet-gateway: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    )


def test_open_on_the_network_needs_the_second_flag(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text("models:\n  - name: tiny\n")

    async def scenario() -> None:
        process, url = await start("--routes", str(routes), "--open", "--open-on-network",
                                   "--listen", "0.0.0.0:0")  # fmt: skip
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 15) == 0
        assert url.startswith("http://0.0.0.0:")

    asyncio.run(scenario())
