"""A streaming request's SSE response opened while its model loads, with keep-alive comments."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


class Loading:
    """A streaming request's SSE response, opened once the hub said it starts the model, with
    a keep-alive comment every `every_s` while it loads."""

    def __init__(self, request: web.Request, model: str, every_s: float) -> None:
        self.request = request
        self.model = model
        self.every_s = every_s
        self.response: web.StreamResponse | None = None
        self._beat: asyncio.Future[None] | None = None

    async def start(self) -> None:
        if self.response is None:
            self.response = web.StreamResponse(status=200, headers=SSE_HEADERS)
            await self.response.prepare(self.request)
        self._beat = asyncio.ensure_future(self._keepalive(self.response))

    async def _keepalive(self, response: web.StreamResponse) -> None:
        comment = f": loading {self.model}\n\n".encode()
        while True:
            await asyncio.sleep(self.every_s)
            await response.write(comment)

    async def quiet(self) -> None:
        beat, self._beat = self._beat, None
        if beat is not None:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionResetError):
                await beat
