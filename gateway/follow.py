"""The table the gateway routes with: followed from the hub, or read once from a file.

`Routes` keeps the last table and wakes waiters on each change. While the hub is away the
gateway keeps routing with the last table it received.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import yaml

from agent.backoff import Backoff
from gateway.table import Model, Replica, Table

log = logging.getLogger(__name__)
STATIC_NODE = "static"


class Routes:
    """The last table, an event set at each change, and how long the hub has been silent."""

    def __init__(self, table: Table | None = None, clock: Callable[[], float] = time.monotonic
                 ) -> None:  # fmt: skip
        self.table = table
        self.clock = clock
        self.listeners: list[Callable[[Table], None]] = []
        self._changed = asyncio.Event()
        self._silent_since: float | None = None

    def set(self, table: Table) -> None:
        self.table = table
        self._silent_since = None
        for listener in self.listeners:
            listener(table)
        self.touch()

    def touch(self) -> None:
        """Wake the waiters without a new table (something else they look at changed)."""
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def next_change(self) -> asyncio.Event:
        """An event set at the next table (take it before reading the current one)."""
        return self._changed

    def lost(self) -> None:
        """The stream from the hub ended: the table ages from now on."""
        if self._silent_since is None:
            self._silent_since = self.clock()

    def silence_s(self) -> float:
        """Seconds since the hub was last heard from; 0 while its stream is up."""
        if self._silent_since is None:
            return 0.0
        return max(0.0, self.clock() - self._silent_since)


async def follow(
    routes: Routes,
    watch: Callable[[], AsyncIterator[Table]],
    stop: asyncio.Event,
    backoff: Backoff | None = None,
) -> None:
    """Keep `routes` current from the hub's stream, reconnecting with backoff until stop."""
    backoff = backoff or Backoff()
    while not stop.is_set():
        problem = "the hub closed the stream"
        try:
            async for table in watch():
                if routes.table is None:
                    log.info(
                        "routing table received from the hub (generation %d)", table.generation
                    )
                routes.set(table)
                backoff.reset()
                if stop.is_set():
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the process edge: any failure of the stream reconnects
            problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        routes.lost()
        delay = backoff.next()
        log.warning("routes from the hub: %s; reconnecting in %.1f s", problem, delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)


class RoutesFileError(Exception):
    """One line: what is wrong with the --routes file."""


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise RoutesFileError(f"{where} must be a list of strings")
    return tuple(value)


def parse_routes(data: Any, where: str = "routes") -> Table:
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise RoutesFileError(f"{where}: expected a mapping with a list `models:`")
    models: list[Model] = []
    replicas: list[Replica] = []
    seen: set[str] = set()
    for number, item in enumerate(data["models"], 1):
        at = f"{where}: models[{number}]"
        if not isinstance(item, dict):
            raise RoutesFileError(f"{at} must be a mapping with `name:`")
        unknown = set(item) - {"name", "aliases", "served_model_name", "endpoints"}
        if unknown:
            raise RoutesFileError(f"{at}: unknown field {sorted(unknown)[0]!r}")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise RoutesFileError(f"{at}: `name:` is required")
        if name in seen:
            raise RoutesFileError(f"{at}: model {name!r} is defined twice")
        seen.add(name)
        served = item.get("served_model_name") or ""
        if not isinstance(served, str):
            raise RoutesFileError(f"{at}: served_model_name must be a string")
        endpoints = _strings(item.get("endpoints"), f"{at}: endpoints")
        for endpoint in endpoints:
            if not endpoint.startswith(("http://", "https://")):
                raise RoutesFileError(f"{at}: endpoint {endpoint!r} is not http://HOST:PORT")
            replicas.append(Replica(name, STATIC_NODE, endpoint.rstrip("/"), True, "ready"))
        state = "ready" if endpoints else "stopped"
        aliases = _strings(item.get("aliases"), f"{at}: aliases")
        models.append(Model(name, aliases, served, state=state))
    return Table(generation=1, models=tuple(models), replicas=tuple(replicas))


def load_routes(path: Path) -> Table:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise RoutesFileError(f"cannot read --routes {path}: {exc.strerror or exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        line = str(exc).splitlines()[0]
        raise RoutesFileError(f"--routes {path} is not YAML: {line}") from None
    return parse_routes(data, str(path))
