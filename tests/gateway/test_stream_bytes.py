"""Streamed answers at the byte level, from an upstream written at the socket: its SSE body goes
out in HTTP chunks unrelated to its events, in TCP writes that split events, lines, CRLFs and
the chunked framing itself, with pauses between them. The gateway passes every byte through in
order and ends only after the upstream ended; an upstream that breaks off in the middle of an
event gets the client an OpenAI-style error event, never a clean end or a garbled event."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
import openai
import pytest

from gateway.sse import WholeEvents
from gateway.table import Model
from tests.gateway.support import Running, gateway, table

TINY = Model("tiny", served_model_name="tiny-gguf")
CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "stream": True}
WORDS = ["Once", " upon", " a", " time", " there"]


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 60))


def event(delta: dict[str, str], finish: str | None = None) -> bytes:
    """One chat chunk as sse-starlette (llama-cpp-python's server) writes it: CRLF lines."""
    data = {
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
        "model": "tiny-gguf",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }  # fmt: skip
    return b"data: " + json.dumps(data).encode() + b"\r\n\r\n"


def sse_body() -> list[bytes]:
    """The events of a 5-token answer, a ping comment among them, ended by [DONE]."""
    events = [event({"role": "assistant"})]
    events += [event({"content": word}) for word in WORDS]
    events.insert(3, b": ping - 2026-01-01 00:00:00\r\n\r\n")
    return [*events, event({}, finish="length"), b"data: [DONE]\r\n\r\n"]


def framed(body: bytes, size: int = 50) -> bytes:
    """`body` in HTTP/1.1 chunks of `size` bytes, then the last chunk."""
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def framed_at(body: bytes, offset: int, size: int = 50) -> int:
    """Where byte `offset` of `body` lies in framed(body, size)."""
    whole, within = divmod(offset, size)
    before = framed(body[: whole * size], size)[: -len(b"0\r\n\r\n")]
    line = b"%x\r\n" % len(body[whole * size : (whole + 1) * size])
    return len(before) + len(line) + within


HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
    b"cache-control: no-store\r\ntransfer-encoding: chunked\r\n\r\n"
)


@dataclass
class RawUpstream:
    """Answers every request with `answer` in writes of `step` bytes, `pause_s` apart. With
    `hold_at`, it waits for `release` before writing byte `hold_at` on; with `cut_at`, it
    aborts the connection after byte `cut_at` instead of writing the rest."""

    answer: bytes
    step: int = 7
    pause_s: float = 0.002
    hold_at: int | None = None
    cut_at: int | None = None
    holding: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            end = len(self.answer) if self.cut_at is None else self.cut_at
            for start in range(0, end, self.step):
                stop = min(start + self.step, end)
                if self.hold_at is not None and start <= self.hold_at < stop:
                    writer.write(self.answer[start : self.hold_at])
                    await writer.drain()
                    self.holding.set()
                    await self.release.wait()
                    start = self.hold_at
                writer.write(self.answer[start:stop])
                await writer.drain()
                await asyncio.sleep(self.pause_s)
        finally:
            if self.cut_at is not None:
                writer.transport.abort()
            else:
                writer.close()


@asynccontextmanager
async def raw_upstream(server: RawUpstream) -> AsyncIterator[RawUpstream]:
    listening = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    host, port = listening.sockets[0].getsockname()[:2]
    server.url = f"http://{host}:{port}"
    try:
        yield server
    finally:
        server.release.set()
        listening.close()


async def read_stream(gw: Running, into: list[bytes]) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{gw.url}/v1/chat/completions", json=CHAT) as reply,
    ):
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/event-stream")
        async for piece in reply.content.iter_any():
            into.append(piece)


@pytest.mark.parametrize("step", [1, 7, 64, 4096])
def test_every_byte_goes_through_in_order_and_the_stream_ends_after_the_upstream(
    step: int,
) -> None:
    body = b"".join(sse_body())
    answer = HEAD + framed(body)
    final = len(HEAD) + framed_at(body, body.index(b'"length"'))  # inside the last event

    async def scenario() -> None:
        up = RawUpstream(answer, step=step, hold_at=final)
        async with raw_upstream(up), gateway(table((TINY, [up.url]))) as gw:
            received: list[bytes] = []
            reading = asyncio.ensure_future(read_stream(gw, received))
            await asyncio.wait_for(up.holding.wait(), 10)
            await asyncio.sleep(0.3)
            assert not reading.done()  # the upstream has not ended: neither has the answer
            up.release.set()
            await asyncio.wait_for(reading, 10)
            assert b"".join(received) == body

    run(scenario)


def test_the_openai_client_gets_every_chunk_and_the_finish_reason() -> None:
    async def scenario() -> None:
        up = RawUpstream(HEAD + framed(b"".join(sse_body()), size=13), step=5)
        async with raw_upstream(up), gateway(table((TINY, [up.url]))) as gw:
            stream = await gw.client().chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            chunks = [c async for c in stream]
            assert [c.choices[0].delta.content for c in chunks[1:-1]] == WORDS
            assert chunks[0].choices[0].delta.role == "assistant"
            assert [c.choices[0].finish_reason for c in chunks] == [None] * 6 + ["length"]

    run(scenario)


# Where the upstream breaks off in the event of " a", and how much of that event the client
# gets: in its JSON, after its data line's CR LF, between its blank line's CR and LF (the
# event is whole for an SSE parser: the CR ends the blank line).
CUTS = {"in the JSON": (40, 0), "after the data line": (-2, 0), "between CR and LF": (-1, -1)}


@pytest.mark.parametrize("where", list(CUTS))
def test_an_upstream_that_breaks_off_inside_an_event_is_an_error_event(where: str) -> None:
    """What the client had of the event cut is dropped, the error event follows a blank line,
    and the official client raises the gateway's error after the chunks before the cut."""
    events = sse_body()
    before, cut_event = b"".join(events[:4]), events[4]  # role, "Once", " upon", a ping
    assert b" a" in cut_event
    cut, kept = (len(cut_event) + n if n < 0 else n for n in CUTS[where])
    body = b"".join(events)
    answer = HEAD + framed(body)
    cut_at = len(HEAD) + framed_at(body, len(before) + cut)

    async def scenario() -> None:
        up = RawUpstream(answer, step=3, cut_at=cut_at)
        async with raw_upstream(up), gateway(table((TINY, [up.url]))) as gw:
            received: list[bytes] = []
            await read_stream(gw, received)
            sent, _, error = b"".join(received).partition(b'data: {"error"')
            assert sent == before + cut_event[:kept]
            payload = json.loads(b'{"error"' + error)
            assert payload["error"]["code"] == "upstream_broke_off"
            assert error.endswith(b"}\n\n")

            stream = await gw.client().chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            words: list[str | None] = []
            with pytest.raises(openai.APIError, match="the upstream broke off the stream"):
                async for c in stream:
                    words.append(c.choices[0].delta.content)
            assert words[1:] == WORDS[: 3 if kept else 2]

    run(scenario)


@pytest.mark.parametrize("newline", [b"\r\n", b"\n", b"\r"])
def test_whole_events_go_out_as_soon_as_their_blank_line_is_read(newline: bytes) -> None:
    """Fed an answer split at any two points, each event goes out whole in the read that
    completes it (nothing waits for the next read), and everything goes out in order."""
    events = [b"data: " + n + newline + newline for n in (b'{"a": 1}', b"[DONE]")]
    events.insert(1, b": ping" + newline + newline)
    answer = b"".join(events)
    ends = [len(b"".join(events[: i + 1])) for i in range(len(events))]
    for first in range(len(answer) + 1):
        for second in range(first, len(answer) + 1):
            whole = WholeEvents()
            out = b""
            for piece_end, piece in (
                (first, answer[:first]), (second, answer[first:second]),
                (len(answer), answer[second:]),
            ):  # fmt: skip
                out += whole.feed(piece)
                done = max((end for end in ends if end <= piece_end), default=0)
                # A read that stops between an event's last CR and LF: the CR ends the event.
                split_crlf = newline == b"\r\n" and piece_end + 1 in ends
                assert len(out) == (piece_end if split_crlf else done), (first, second)
            assert out + whole.rest() == answer
