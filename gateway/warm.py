"""Seen ready: while requests wait for a loading model, the gateway probes the loading
replica's server itself, so they go there as soon as it answers rather than about a second
later, when the agent's health check has reached the hub's table.

The override holds until the table says the replica is healthy, drops it, or marks it
draining or failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging

import aiohttp

from gateway.follow import Routes
from gateway.table import Model, Replica, Table

log = logging.getLogger(__name__)
PROBE_EVERY_S = 0.1
PROBE_TIMEOUT_S = 1.0
PROBED_STATES = frozenset({"loading", "switching"})
ENDED_STATES = frozenset({"draining", "failed"})


class Warm:
    def __init__(
        self, session: aiohttp.ClientSession, routes: Routes, every_s: float = PROBE_EVERY_S
    ) -> None:
        self.session = session
        self.routes = routes
        self.every_s = every_s
        self._seen: dict[str, set[str]] = {}  # model: endpoints that answered
        self._probes: dict[str, asyncio.Task[None]] = {}
        routes.listeners.append(self._prune)

    def routable(self, table: Table, model: str) -> tuple[Replica, ...]:
        """The table's healthy replicas of `model`, and those seen ready here."""
        seen = self._seen.get(model, set())
        return tuple(
            r if r.routable else dataclasses.replace(r, healthy=True)
            for r in table.replicas_of(model)
            if r.routable or (r.endpoint and r.endpoint in seen)
        )

    def seen(self, model: str) -> frozenset[str]:
        return frozenset(self._seen.get(model, ()))

    def _prune(self, table: Table) -> None:
        for model, seen in list(self._seen.items()):
            seen &= {
                r.endpoint
                for r in table.replicas_of(model)
                if r.endpoint and not r.healthy and r.state not in ENDED_STATES
            }
            if not seen:
                del self._seen[model]

    def probe(self, model: Model) -> None:
        """Probe `model`'s loading replicas until `stop` (one loop per model)."""
        if model.name not in self._probes:
            self._probes[model.name] = asyncio.ensure_future(self._loop(model))

    async def stop(self, model: str) -> None:
        task = self._probes.pop(model, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        for name in list(self._probes):
            await self.stop(name)

    async def _loop(self, model: Model) -> None:
        while True:
            table = self.routes.table
            seen = self._seen.get(model.name, set())
            loading = [
                r.endpoint
                for r in (table.replicas_of(model.name) if table is not None else ())
                if r.endpoint and not r.healthy and r.state in PROBED_STATES
                and r.endpoint not in seen
            ]  # fmt: skip
            for endpoint in loading:
                if await self._answers(endpoint, model.served):
                    log.info("model %s: %s answers before the table says so", model.name,
                             endpoint)  # fmt: skip
                    self._seen.setdefault(model.name, set()).add(endpoint)
                    self.routes.touch()
            await asyncio.sleep(self.every_s)

    async def _answers(self, endpoint: str, served: str) -> bool:
        timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)
        try:
            async with self.session.get(f"{endpoint}/v1/models", timeout=timeout) as reply:
                if reply.status != 200:
                    return False
                document = await reply.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return False
        data = document.get("data") if isinstance(document, dict) else None
        if not isinstance(data, list):
            return False
        return any(isinstance(item, dict) and item.get("id") == served for item in data)
