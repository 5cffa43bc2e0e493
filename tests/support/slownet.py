"""A slow network at the process edge: a TCP proxy that forwards to a target at a bounded rate,
so that a test can stop a process in the middle of a download.

    python -m tests.support.slownet --target 127.0.0.1:9000 --rate 8000000

prints `PORT n` once listening (port 0 picks a free one); each connection's bytes from the
target to the client go at most `rate` bytes per second; the other way is not limited.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

CHUNK = 64 * 1024
Handle = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rate: float) -> None:
    started = time.monotonic()
    sent = 0
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
            sent += len(data)
            if rate:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


def handler(target: tuple[str, int], rate: float) -> Handle:
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            upstream_r, upstream_w = await asyncio.open_connection(*target)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(pipe(client_r, upstream_w, 0), pipe(upstream_r, client_w, rate))

    return handle


async def serve(port: int, target: tuple[str, int], rate: float) -> None:
    server = await asyncio.start_server(handler(target, rate), "127.0.0.1", port)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(prog="slownet")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--target", required=True, metavar="HOST:PORT")
    parser.add_argument("--rate", type=float, required=True, help="bytes per second")
    args = parser.parse_args()
    host, _, port = args.target.rpartition(":")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, (host, int(port)), args.rate))


if __name__ == "__main__":
    main()
