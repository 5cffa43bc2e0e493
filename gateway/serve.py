"""Running the gateway: the HTTP server, the hub follower and the activity reports, and
a graceful stop (stop listening, let requests in flight finish within GRACE_S)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from gateway.activity import ActivityLog, report_loop
from gateway.app import Gateway, Settings, client_session, make_app
from gateway.follow import Routes, follow
from gateway.hub import Hub
from gateway.metrics import Metrics
from gateway.proxy import Proxy
from gateway.router import Router
from gateway.scale import DEFAULT_MAX_QUEUE, Scaler
from gateway.warm import Warm

log = logging.getLogger(__name__)
GRACE_S = 10.0


class ListenError(Exception):
    """One line: the address cannot be served on."""


@dataclass
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8080
    settings: Settings = field(default_factory=Settings)
    max_queue: int = DEFAULT_MAX_QUEUE
    keepalive_s: float = 5.0
    grace_s: float = GRACE_S


def url_of(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = str(address[0])
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{address[1]}"
    return f"http://{address}"


async def serve(
    options: ServeOptions,
    routes: Routes,
    hub: Hub | None,
    stop: asyncio.Event,
    listening: Callable[[str], None],
) -> None:
    metrics = Metrics()
    activity = ActivityLog()
    router = Router(reported=activity.reported)
    async with client_session() as session:
        warm = Warm(session, routes)
        scaler = Scaler(routes, hub, metrics, warm, options.max_queue)
        proxy = Proxy(session, routes, router, scaler, activity, metrics, options.keepalive_s)
        gateway = Gateway(options.settings, routes, hub, router, proxy, metrics)
        runner = web.AppRunner(
            make_app(gateway), handler_cancellation=True, shutdown_timeout=options.grace_s,
            access_log=None,
        )  # fmt: skip
        await runner.setup()
        tasks: list[asyncio.Task[None]] = []
        try:
            site = web.TCPSite(runner, options.host, options.port)
            try:
                await site.start()
            except OSError as exc:
                reason = os.strerror(exc.errno) if exc.errno else str(exc)
                where = f"{options.host}:{options.port}"
                raise ListenError(f"cannot listen on {where}: {reason}") from None
            if hub is not None:
                tasks.append(asyncio.create_task(follow(routes, hub.watch_routes, stop)))
                tasks.append(asyncio.create_task(report_loop(activity, hub, stop)))
            listening(url_of(runner.addresses[0]))
            await stop.wait()
            log.info("stopping: no new connections, up to %g s for requests in flight",
                     options.grace_s)  # fmt: skip
        finally:
            await runner.cleanup()
            await warm.close()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if hub is not None:
                await hub.close()
