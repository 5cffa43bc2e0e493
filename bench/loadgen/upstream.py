"""A fast OpenAI-shaped upstream: what a model server answers, at once, without a model.

    python -m bench.loadgen.upstream --port 9001 [--delay-ms 20] [--chunks 8]

POST /v1/chat/completions answers a chat completion as JSON, or with `"stream": true` as
Server-Sent Events: CHUNKS chunks of one token each, then `data: [DONE]`. Every answer waits
DELAY ms first (a model's time to first token; 0: none). GET /v1/models and /health answer
too (what proxies probe). Says `upstream listening on http://127.0.0.1:PORT` on stderr once
serving; SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time

from aiohttp import web

ID = "chatcmpl-bench"


def chunk(model: str, created: int, delta: dict[str, str], finish: str | None) -> bytes:
    body = {"id": ID, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


def completion(model: str, created: int, chunks: int) -> dict[str, object]:
    return {
        "id": ID, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": " tok" * chunks}}],
        "usage": {"prompt_tokens": 8, "completion_tokens": chunks, "total_tokens": 8 + chunks},
    }  # fmt: skip


class Upstream:
    def __init__(self, delay_s: float, chunks: int) -> None:
        self.delay_s, self.chunks = delay_s, chunks

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        model, created = str(body.get("model") or "bench"), int(time.time())
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if not body.get("stream"):
            return web.json_response(completion(model, created, self.chunks))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-cache"})  # fmt: skip
        await response.prepare(request)
        await response.write(chunk(model, created, {"role": "assistant", "content": ""}, None))
        for _ in range(self.chunks):
            await response.write(chunk(model, created, {"content": " tok"}, None))
        await response.write(chunk(model, created, {}, "stop"))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "bench", "object": "model"}]})

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})


async def serve(port: int, delay_s: float, chunks: int) -> None:
    upstream = Upstream(delay_s, chunks)
    app = web.Application()
    app.router.add_post("/v1/chat/completions", upstream.chat)
    app.router.add_post("/chat/completions", upstream.chat)
    app.router.add_get("/v1/models", upstream.models)
    app.router.add_get("/health", upstream.health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"upstream listening on http://127.0.0.1:{port}", file=sys.stderr, flush=True)
    stopped = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopped.set)
    try:
        await stopped.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--chunks", type=int, default=8)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.delay_ms / 1000, args.chunks))


if __name__ == "__main__":
    main()
