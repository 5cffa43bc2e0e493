"""The hub's HTTP endpoint: GET /metrics (Prometheus text) and GET /healthz.

A few lines of asyncio instead of a web framework: two read-only routes, one request per
connection, bounded header size and read time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 8192
READ_TIMEOUT_S = 5.0
Metrics = Callable[[], Awaitable[bytes]]
Problem = Callable[[], str]  # what is wrong with the hub now; "" when it is healthy


def response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


class HttpEndpoint:
    def __init__(self, metrics: Metrics, problem: Problem) -> None:
        self.metrics = metrics
        self.problem = problem
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._handle, host, port, limit=MAX_HEADER_BYTES)
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
            writer.write(await self._route(head.split(b"\r\n", 1)[0].decode("latin-1")))
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.write(response("400 Bad Request", b"bad request\n"))
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _route(self, request_line: str) -> bytes:
        method, _, rest = request_line.partition(" ")
        path = rest.split(" ", 1)[0].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return response("405 Method Not Allowed", b"only GET\n")
        if path == "/metrics":
            return response("200 OK", await self.metrics(), CONTENT_TYPE_LATEST)
        if path == "/healthz":
            problem = self.problem()
            if not problem:
                return response("200 OK", b"ok\n")
            return response("503 Service Unavailable", f"{problem}\n".encode())
        return response("404 Not Found", b"try /metrics or /healthz\n")
