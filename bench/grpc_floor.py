"""The floor under a `switch --all`: how fast gRPC's asyncio server alone sends one message on
each of many streams, with nothing of the hub around it.

    python -m bench.grpc_floor --streams 10000
    python -m bench.grpc_floor --streams 20        # smallest, a few seconds

A bare grpc.aio server (the hub's channel options, plaintext) holds `--streams` bidirectional
streams from client processes (one connection per stream, 250 per process at nice 10, as
bench.switch_fanout's simulators). One call makes it send a 200-byte message on every stream,
in each of two styles: `generator`, the handler yields it (how hub/link.py sends today), and
`write`, the handler awaits context.write(). Printed per style: when the server had handed
every message to gRPC and when gRPC had sent them all (after the call), and when the clients
received theirs (p50/p99/max). bench.switch_fanout's first-task figures cannot go below these.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc

from bench.common import free_port, spawn, stop, wait
from bench.switch_fanout import AGENTS_PER_PROC, quantiles, spread
from gpufleet.channel import SETTINGS

PAYLOAD = b"x" * 200
STYLES = ("generator", "write")


class Server:
    """Each stream parks on a future until the trigger; times are wall clock."""

    def __init__(self, style: str) -> None:
        self.style = style
        self.parked: list[asyncio.Future[bytes]] = []
        self.handed: list[float] = []
        self.sent: list[float] = []

    async def _next(self, context: Any) -> bytes:
        await context.read()  # the client's hello
        parked: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.parked.append(parked)
        return await parked

    async def generator(self, _requests: Any, context: Any) -> AsyncIterator[bytes]:
        message = await self._next(context)
        self.handed.append(time.time())
        yield message
        self.sent.append(time.time())
        await asyncio.Event().wait()  # the stream stays open, as an agent's does

    async def write(self, _requests: Any, context: Any) -> None:
        message = await self._next(context)
        self.handed.append(time.time())
        await context.write(message)
        self.sent.append(time.time())
        await asyncio.Event().wait()

    async def trigger(self, _request: bytes, _context: Any) -> bytes:
        for parked in self.parked:
            parked.set_result(PAYLOAD)
        return str(time.time()).encode()

    async def stats(self, _request: bytes, _context: Any) -> bytes:
        ends = {k: max(v) if v else None for k, v in (("handed", self.handed),
                                                      ("sent", self.sent))}  # fmt: skip
        return json.dumps({"connected": len(self.parked), **ends}).encode()

    async def serve(self, port: int) -> None:
        server = grpc.aio.server(options=SETTINGS.server_options())
        handler = self.generator if self.style == "generator" else self.write
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("floor.Floor", {
            "Connect": grpc.stream_stream_rpc_method_handler(handler),
            "Trigger": grpc.unary_unary_rpc_method_handler(self.trigger),
            "Stats": grpc.unary_unary_rpc_method_handler(self.stats),
        })])  # fmt: skip
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()


async def clients(port: int, count: int, out: Path) -> None:
    """`count` streams, each on its own connection; their arrival times into `out`."""
    arrived: list[float] = []

    async def one() -> None:
        options = [("grpc.use_local_subchannel_pool", 1)]
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options)
        call = channel.stream_stream("/floor.Floor/Connect", None, None)(None, wait_for_ready=True)
        await call.write(b"hello")
        await call.read()
        arrived.append(time.time())
        await asyncio.Event().wait()

    streams = [asyncio.ensure_future(one()) for _ in range(count)]
    while not all(s.done() for s in streams):
        await asyncio.sleep(0.25)
        out.with_suffix(".tmp").write_text(json.dumps(arrived))
        out.with_suffix(".tmp").replace(out)


def open_files() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def one_style(style: str, streams: int, work: Path) -> str:
    port = free_port()
    server = spawn(["-m", "bench.grpc_floor", "--serve", str(port), style],
                   log=work / f"server-{style}.log")  # fmt: skip
    procs = math.ceil(streams / AGENTS_PER_PROC)
    outs = [work / f"{style}-{p}.json" for p in range(procs)]
    sims: list[subprocess.Popen[str]] = []
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        call = channel.unary_unary("/floor.Floor/Stats", None, None)
        _stats(call)  # the server listens before the first client dials
        sims += [
            spawn(
                ["-m", "bench.grpc_floor", "--clients", str(port), str(count), str(out)],
                log=work / f"clients-{style}.log",
                nice=10,
            )
            for (_, count), out in zip(spread(streams, procs), outs, strict=True)
        ]
        wait(lambda: _stats(call)["connected"] >= streams, 120 + streams / 50, server, *sims)
        time.sleep(1.0)
        began = float(channel.unary_unary("/floor.Floor/Trigger", None, None)(b"", timeout=60))
        arrived: list[float] = []

        def all_arrived() -> bool:
            arrived[:] = [at for out in outs if out.exists() for at in json.loads(out.read_text())]
            return len(arrived) >= streams

        wait(all_arrived, 60 + streams / 100, server, *sims)
        found = _stats(call)
        channel.close()
    finally:
        stop(*sims, server)
    got = quantiles([at - began for at in arrived])
    return (
        f"{style:<10} handed {found['handed'] - began:.2f} s, sent {found['sent'] - began:.2f}"
        f" s, received p50/p99/max {got}"
    )


def _stats(call: Any) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(call(b"", timeout=30, wait_for_ready=True))
    return found


def main() -> None:
    if sys.argv[1:2] in (["--serve"], ["--clients"]):
        open_files()
        if sys.argv[1] == "--serve":
            asyncio.run(Server(sys.argv[3]).serve(int(sys.argv[2])))
        else:
            asyncio.run(clients(int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--style", choices=STYLES, action="append",
                        help="one style (default: both)")  # fmt: skip
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gpufleet-bench-floor-"))
    print(f"streams    {args.streams} (one message each, {len(PAYLOAD)} bytes, "
          f"{math.ceil(args.streams / AGENTS_PER_PROC)} client processes)", flush=True)  # fmt: skip
    for style in args.style or STYLES:
        print(one_style(style, args.streams, work), flush=True)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
