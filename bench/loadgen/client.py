"""The load side: chat completions against one OpenAI-compatible base URL, timed per request.

    python -m bench.loadgen.client --url http://127.0.0.1:8080 --model tiny --requests 2000 \
        --concurrency 16 --warmup 200 --chunks 8 [--stream] [--key SECRET]

CONCURRENCY workers share one keep-alive connection pool and send REQUESTS requests in all,
after WARMUP requests that are not timed. A request counts when it answered 200 with the whole
answer: the message (" tok" x CHUNKS), or for a stream every chunk's content and `[DONE]`.
Prints one JSON object on stdout: the latencies in ms (request sent to answer read), the
seconds the timed requests took together, how many failed, and the first few failures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import aiohttp

MAX_ERRORS = 5


async def stream_content(response: aiohttp.ClientResponse) -> str | None:
    """The streamed message, or None when the stream did not end with `data: [DONE]`."""
    parts: list[str] = []
    async for raw in response.content:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            return "".join(parts)
        for choice in json.loads(data).get("choices") or []:
            parts.append((choice.get("delta") or {}).get("content") or "")
    return None


class Load:
    def __init__(self, args: argparse.Namespace) -> None:
        self.url = args.url.rstrip("/") + "/v1/chat/completions"
        self.stream: bool = args.stream
        self.expected = " tok" * args.chunks
        self.body = {"model": args.model, "stream": args.stream,
                     "messages": [{"role": "user", "content": "Say something."}]}  # fmt: skip
        self.headers = {"Authorization": f"Bearer {args.key}"} if args.key else {}
        self.latencies_ms: list[float] = []
        self.errors: list[str] = []
        self.failed = 0
        self.left = 0

    async def one(self, session: aiohttp.ClientSession) -> float:
        started = time.perf_counter()
        async with session.post(self.url, json=self.body, headers=self.headers) as response:
            if response.status != 200:
                raise ValueError(f"{response.status}: {(await response.text())[:200]}")
            if self.stream:
                content = await stream_content(response)
            else:
                content = (await response.json())["choices"][0]["message"]["content"]
        if content != self.expected:
            raise ValueError(f"unexpected answer {content!r}")
        return (time.perf_counter() - started) * 1000

    async def worker(self, session: aiohttp.ClientSession, timed: bool) -> None:
        while self.left > 0:
            self.left -= 1
            try:
                took = await self.one(session)
            except (aiohttp.ClientError, ValueError, KeyError, IndexError) as exc:
                self.failed += timed
                if len(self.errors) < MAX_ERRORS:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            if timed:
                self.latencies_ms.append(took)

    async def run(self, requests: int, concurrency: int, warmup: int) -> float:
        connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            self.left = warmup
            await asyncio.gather(*(self.worker(session, False) for _ in range(concurrency)))
            self.errors.clear()
            self.left = requests
            started = time.perf_counter()
            await asyncio.gather(*(self.worker(session, True) for _ in range(concurrency)))
            return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="base URL, without /v1")
    parser.add_argument("--model", required=True)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--key", default="", help="sent as Authorization: Bearer KEY")
    args = parser.parse_args()
    load = Load(args)
    seconds = asyncio.run(load.run(args.requests, args.concurrency, args.warmup))
    json.dump({"latencies_ms": load.latencies_ms, "seconds": seconds, "failed": load.failed,
               "errors": load.errors}, sys.stdout)  # fmt: skip


if __name__ == "__main__":
    main()
