"""A gRPC server's memory per agent link: plaintext, mutual TLS, and the hub's options.

    python -m bench.link_memory --links 1000
    python -m bench.link_memory --links 20        # smallest, a few seconds

What one more connected agent costs the hub in gRPC alone, without the hub's own state:
a bare grpc.aio server (the hub's server options, gpufleet/channel.py) in one process, and
`--links` clients in another, each on its own channel with one open bidi stream that
exchanges a small message every 2 s, as an agent's heartbeat stream does. Prints the
server's resident memory per link for plaintext, for mutual TLS on glibc's default heap, and
for mutual TLS as the hub runs it: its options and its C heap (hub/heap.py, per-link buffers
mapped on their own).
`python -m bench.hub_agents` measures the same with the whole hub.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc

from bench.common import REPO, free_port, proc_stats, stop
from gpufleet.channel import SETTINGS
from gpufleet.tls import TLS_OPTIONS, key_pem, make_csr, new_key, write_private, write_public
from hub import heap
from hub.trust.pki import Authority

Options = list[tuple[str, int]]
SETTLE_S = 3.0
# (label, TLS?, server options that replace the hub's, the hub's C heap?)
VARIANTS: list[tuple[str, bool, Options, bool]] = [
    ("plaintext", False, [], True),
    ("mutual TLS, glibc's default heap", True, [], False),
    ("mutual TLS, the hub's heap", True, [], True),
]


def make_pki(root: Path) -> None:
    now = datetime.now(UTC)
    authority = Authority.load_or_create(root, now)
    authority.server_pair(root, now)
    key = new_key()
    issued = authority.issue(make_csr(key), "node/sim-00000", "agent", timedelta(days=1), now)
    write_private(root / "client.key", key_pem(key))
    write_public(root / "client.crt", issued.pem)


async def chat(requests: AsyncIterator[bytes], context: object) -> AsyncIterator[bytes]:
    async for message in requests:
        yield message[:8]


async def serve(port: int, extra: Options, pki: Path | None) -> None:
    if os.environ.get("BENCH_HUB_HEAP") == "1":
        heap.tune()
    names = {name for name, _ in extra}
    options = [kv for kv in SETTINGS.server_options() if kv[0] not in names] + extra
    server = grpc.aio.server(options=options)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "bench.Link", {"Chat": grpc.stream_stream_rpc_method_handler(chat)}
    )])  # fmt: skip
    if pki is None:
        server.add_insecure_port(f"127.0.0.1:{port}")
    else:
        pair = ((pki / "server.key").read_bytes(), (pki / "server.crt").read_bytes())
        credentials = grpc.ssl_server_credentials(
            [pair], root_certificates=(pki / "ca.crt").read_bytes(), require_client_auth=True
        )
        server.add_secure_port(f"127.0.0.1:{port}", credentials)
    await server.start()
    print("up", flush=True)
    await server.wait_for_termination()


async def dial(port: int, links: int, pki: Path | None) -> None:
    target, options = f"127.0.0.1:{port}", SETTINGS.client_options()
    calls = []
    for _ in range(links):
        if pki is None:
            channel = grpc.aio.insecure_channel(target, options=options)
        else:
            credentials = grpc.ssl_channel_credentials(
                *((pki / name).read_bytes() for name in ("ca.crt", "client.key", "client.crt"))
            )
            channel = grpc.aio.secure_channel(target, credentials, [*options, *TLS_OPTIONS])
        call = channel.stream_stream("/bench.Link/Chat", None, None)()  # type: ignore[call-arg]
        await call.write(b"x" * 300)
        await call.read()
        calls.append(call)
    print("connected", flush=True)
    while True:
        await asyncio.sleep(2.0)
        for call in calls:
            await call.write(b"y" * 300)
            await call.read()


def started(argv: list[str], tuned: bool = False) -> subprocess.Popen[str]:
    env = {**os.environ, "BENCH_HUB_HEAP": "1" if tuned else "0"}
    process = subprocess.Popen([sys.executable, "-m", "bench.link_memory", *argv], cwd=REPO,
                               stdout=subprocess.PIPE, text=True, env=env)  # fmt: skip
    assert process.stdout is not None
    if not process.stdout.readline():
        process.wait(10)
        raise SystemExit(f"bench.link_memory {argv[0]} exited with code {process.returncode}")
    return process


def measure(links: int, tls: bool, extra: Options, tuned: bool, pki: Path) -> float:
    """The server's resident KiB per connected link."""
    port = free_port()
    where = [str(pki)] if tls else []
    server = started(["--serve", str(port), json.dumps(extra), *where], tuned)
    clients = None
    try:
        time.sleep(1.0)
        idle, _ = proc_stats(server.pid)
        clients = started(["--dial", str(port), str(links), *where])
        time.sleep(SETTLE_S)
        connected, _ = proc_stats(server.pid)
    finally:
        stop(clients, server)
    return (connected - idle) / links


def main() -> None:
    mode = sys.argv[1:2]
    if mode == ["--serve"]:
        port, given, *pki = sys.argv[2:]
        options = [(str(k), int(v)) for k, v in json.loads(given)]
        asyncio.run(serve(int(port), options, Path(pki[0]) if pki else None))
        return
    if mode == ["--dial"]:
        port, links, *pki = sys.argv[2:]
        asyncio.run(dial(int(port), int(links), Path(pki[0]) if pki else None))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--links", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-links-") as tmp:
        make_pki(Path(tmp))
        print(f"{args.links} links, each one bidi stream; grpc {grpc.__version__}")
        for label, tls, extra, tuned in VARIANTS:
            per_link = measure(args.links, tls, extra, tuned, Path(tmp))
            print(f"{label:<32} {per_link:.1f} KiB per link")


if __name__ == "__main__":
    main()
