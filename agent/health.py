"""What this agent runs and whether it is healthy: the health monitor.

The hub takes a node's state from what its agent reports it runs (after a hub or agent
restart above all), so "containers exist" is not enough: each service's health check, from
the configuration's `x-gpufleet` section in the compose file the agent stores (read with
gpufleet.health, the hub's own rules), or from a host process project's stored spec
(agent/processes.py: its one service, "container" `pid N`), is polled at its interval (at
least MIN_INTERVAL_S) from one asyncio task, never a thread per check. Containers are listed
every LIST_EVERY_S and whenever a task changed a project.

A service's health, as the hub reads it (ServiceStatus.health):
  healthy    its last check passed
  unhealthy  its container is not running; or its check failed FAILS_TO_UNHEALTHY times in a
             row after passing; or it never passed within the check's timeout from when the
             monitor first saw the container
  unchecked  not checked yet, failing but still within that timeout (a model loading), or the
             configuration declares no check (the message says which)

A hello re-checks everything first (`recheck`); heartbeats carry the report only when it
changed (`changed`; `pending` asks without sending, for an early heartbeat). Tasks tell the
monitor when they changed a project (`touched`) and when a wait found services healthy
(`passed`), so the report agrees with the operation's end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field, replace

from agent.compose import Container, Podman
from agent.probing import Fetch, Reply, http_get, judge
from agent.processes import Processes
from agent.projects import ProjectStore, expand
from agent.tasks.context import Running
from agent.tasks.wait_healthy import assigned_elsewhere
from gpufleet.health import HealthCheck, compose_checks

log = logging.getLogger(__name__)

HEALTHY, UNHEALTHY, UNCHECKED = "healthy", "unhealthy", "unchecked"
MIN_INTERVAL_S = 1.0
LIST_EVERY_S = 5.0
FAILS_TO_UNHEALTHY = 3
LIST_FAILURES = 2  # podman ps failures in a row before the report says "cannot tell"


@dataclass(frozen=True)
class Health:
    state: str  # healthy | unhealthy | unchecked
    message: str = ""


@dataclass(frozen=True)
class Observed:
    """A project as it runs, with each service's health (by service name)."""

    running: Running
    health: Mapping[str, Health]

    def key(self) -> tuple[object, ...]:
        services = tuple(
            (c.service, c.container_id, c.state, self.health.get(c.service, Health(UNCHECKED)))
            for c in self.running.containers
        )
        return (self.running.name, self.running.digest, services)


@dataclass
class _Watch:
    """One service's check against one container."""

    container_id: str
    check: HealthCheck | None  # URL expanded; None: the configuration declares none
    first_seen: float
    due: float
    passed: bool = False  # since first seen
    fails: int = 0  # in a row
    seen: str = ""  # what the last failing check saw
    polled: bool = False
    ok: bool = False  # the last check passed


@dataclass
class _Project:
    running: Running
    checks: dict[str, HealthCheck] | None  # None: no readable x-gpufleet section
    problem: str = ""
    watches: dict[str, _Watch] = field(default_factory=dict)


class HealthMonitor:
    def __init__(
        self,
        store: ProjectStore,
        podman: Podman,
        env: Mapping[str, str],
        elsewhere: Callable[[str], set[str]] | None = None,
        fetch: Fetch = http_get,
        clock: Callable[[], float] = time.monotonic,
        processes: Processes | None = None,
    ) -> None:
        self.store = store
        self.processes = processes or Processes(store.root.parent)
        self.podman = podman
        self.env = env
        # Services GPU assignments put on other nodes: not run here, not checked.
        self.elsewhere = elsewhere or (
            lambda name: assigned_elsewhere(store.project(name).directory)
        )
        self.fetch = fetch
        self.clock = clock
        self._projects: dict[str, _Project] = {}
        self._unknown = False  # podman could not list the containers
        self._list_failures = 0  # in a row
        self._listed = -float("inf")
        self._sent: tuple[object, ...] | None = None
        self._wake = asyncio.Event()
        self._dirty: set[str] = set()
        # Touched and not listed again since: what the monitor holds of them may predate the
        # task (a listing begun before a compose down), so no report is sent meanwhile.
        self._stale: set[str] = set()
        self._touches: dict[str, int] = {}

    # -- what the link asks -------------------------------------------------------------

    def snapshot(self) -> list[Observed] | None:
        """What runs now, with health; None when podman could not tell."""
        if self._unknown:
            return None
        return [
            Observed(p.running, {name: self._health(p, name) for name in _services(p)})
            for _, p in sorted(self._projects.items())
            if p.running.containers
        ]

    def container_ids(self) -> frozenset[str]:
        """Every container of this agent's projects, as last listed (every few seconds and
        after each task that changed a project)."""
        return frozenset(
            c.container_id for p in self._projects.values() for c in p.running.containers
        )

    def sessions(self) -> frozenset[int]:
        """The sessions of the supervised host processes that run now (agent/managed.py)."""
        return self.processes.sessions()

    async def recheck(self) -> list[Observed] | None:
        """List the containers and poll every check once now (for a hello)."""
        await self._list(None)
        await self._poll(force=True)
        found = self.snapshot()
        self._sent = _key(found)
        return found

    def changed(self) -> tuple[bool, list[Observed] | None]:
        """(True, report) when the report differs from the last one sent."""
        found = self.snapshot()
        key = _key(found)
        if key == self._sent or self._stale:
            return False, found
        self._sent = key
        return True, found

    def pending(self) -> bool:
        """Whether `changed()` would report now (the link then heartbeats early); asking does
        not count as sending."""
        return not self._stale and _key(self.snapshot()) != self._sent

    # -- what tasks tell it -------------------------------------------------------------

    def touched(self, project: str) -> None:
        """A task changed the project: read its checks and list its containers again soon."""
        self._dirty.add(project)
        self._stale.add(project)
        self._touches[project] = self._touches.get(project, 0) + 1
        self._wake.set()

    async def passed(self, project: str, services: Collection[str]) -> None:
        """A health wait found these services healthy."""
        await self._list(project)
        found = self._projects.get(project)
        if found is None:
            return
        now = self.clock()
        for name in services:
            watch = found.watches.get(name)
            if watch is not None:
                watch.passed = watch.polled = watch.ok = True
                watch.fails, watch.seen = 0, ""
                watch.due = now + _interval(watch.check)

    # -- the loop -----------------------------------------------------------------------

    async def watch(self, stop: asyncio.Event) -> None:
        """Poll until `stop` is set; a failure is logged and the loop goes on."""
        while not stop.is_set():
            self._wake.clear()
            try:
                if self.clock() - self._listed >= LIST_EVERY_S:
                    await self._list(None)
                while self._dirty:
                    await self._list(self._dirty.pop(), reread=True)
                await self._poll(force=False)
            except Exception:  # the monitor must not die with a bug: log, go on
                log.exception("health monitor failed; trying again")
            delay = min([LIST_EVERY_S, *self._waits()])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_first(stop.wait(), self._wake.wait()), max(0.05, delay))

    def _waits(self) -> list[float]:
        now = self.clock()
        return [
            w.due - now
            for p in self._projects.values()
            for w in p.watches.values()
            if w.check is not None
        ]

    async def _list(self, only: str | None, reread: bool = False) -> None:
        every = {p.name for p in self.store.known()} | set(self.processes.known())
        names = [only] if only is not None else sorted(every)
        touches = dict(self._touches)
        try:
            listed = {name: await self._containers(name) for name in names}
        except Exception as exc:
            if only is None:
                self._list_failures += 1
                # One slow or failed podman ps must not make the hub think the node broke.
                self._unknown = self._unknown or self._list_failures >= LIST_FAILURES or (
                    not self._projects)  # fmt: skip
            if self._list_failures <= 1:  # once per spell of trouble, not every 5 s
                log.warning("cannot list running projects: %s", exc or type(exc).__name__)
            return
        if only is None:
            self._unknown = False
            self._list_failures = 0
            self._listed = self.clock()
            for gone in set(self._projects) - set(listed):
                del self._projects[gone]
        if only is None:  # a project no longer known is not waited for
            self._stale &= set(names)
        for name, containers in listed.items():
            if self._touches.get(name, 0) == touches.get(name, 0):  # listed after any touch
                self._update(name, containers, reread)
                self._stale.discard(name)
            # else a task changed it while podman listed: the re-list of `touched` tells

    async def _containers(self, name: str) -> tuple[Container, ...]:
        if self.processes.is_process(name):
            return self.processes.listing(name)[1]
        return tuple(await self.podman.containers(name))

    def _digest(self, name: str) -> str:
        if self.processes.is_process(name):
            return self.processes.listing(name)[0]
        return self.store.project(name).digest()

    def _update(self, name: str, containers: tuple[Container, ...], reread: bool) -> None:
        digest = self._digest(name) if containers else ""
        found = self._projects.get(name)
        if found is None:
            found = self._projects[name] = _Project(Running(name, digest, containers), None)
            reread = True
        if reread or found.running.digest != digest:
            found.checks, found.problem = self._checks(name)
        found.running = Running(name, digest, containers)
        now = self.clock()
        watches: dict[str, _Watch] = {}
        for container in containers:
            check = (found.checks or {}).get(container.service)
            old = found.watches.get(container.service)
            if old is not None and old.container_id == container.container_id:
                old.check = check
                watches[container.service] = old
            else:
                watches[container.service] = _Watch(container.container_id, check, now, now)
        found.watches = watches

    def _checks(self, name: str) -> tuple[dict[str, HealthCheck] | None, str]:
        if self.processes.is_process(name):
            spec = self.processes.spec(name)
            if spec is None:
                return None, "no health check known (its stored process spec cannot be read)"
            if spec.health is None:
                return {}, ""
            return {spec.service: replace(spec.health, url=expand(spec.health.url, self.env))}, ""
        project = self.store.project(name)
        try:
            # Expanded as podman-compose expands it (the stored file has `$` escaped).
            checks = compose_checks(self.store.load(project.name))
        except Exception as exc:  # whatever the stored file holds, the monitor goes on
            return None, f"no health check known ({' '.join(str(exc).splitlines())[:160]})"
        skip = self.elsewhere(name)
        expanded = {service: check for service, check in checks.items() if service not in skip}
        return expanded, ""

    async def _poll(self, force: bool) -> None:
        now = self.clock()
        due = [
            (w, w.check)
            for p in self._projects.values()
            for name, w in p.watches.items()
            if w.check is not None and (force or w.due <= now) and _up(p, name)
        ]
        if not due:
            return
        answers = await asyncio.gather(*(self.fetch(c.url) for _, c in due), return_exceptions=True)
        replies = [
            a if isinstance(a, Reply) else Reply(0, "", f"no answer ({a!r:.160})") for a in answers
        ]
        now = self.clock()
        for (watch, check), reply in zip(due, replies, strict=True):
            watch.polled = True
            watch.due = now + _interval(check)
            failure = judge(reply, check.expect_status, check.expect_model)
            watch.ok = not failure
            if watch.ok:
                watch.passed, watch.fails, watch.seen = True, 0, ""
            else:
                watch.fails += 1
                watch.seen = f"{check.url} gave {failure}"

    def _health(self, project: _Project, name: str) -> Health:
        container = next(c for c in project.running.containers if c.service == name)
        project_name = project.running.name
        if container.state != "running" and self.processes.is_process(project_name):
            return Health(UNHEALTHY, f"its process {self.processes.state(project_name).describe()}")
        if container.state != "running":
            return Health(UNHEALTHY, f"its container is {container.state or 'gone'}")
        watch = project.watches[name]
        check = watch.check
        if check is None:
            return Health(UNCHECKED, project.problem or "the configuration declares no check")
        if not watch.polled:
            return Health(UNCHECKED, "not checked yet")
        if watch.ok:
            return Health(HEALTHY)
        expired = self.clock() - watch.first_seen >= check.timeout_s
        if (watch.passed and watch.fails >= FAILS_TO_UNHEALTHY) or (not watch.passed and expired):
            return Health(UNHEALTHY, watch.seen)
        if watch.passed:
            return Health(HEALTHY)  # one or two failures in a row: not yet a verdict
        return Health(UNCHECKED, f"not healthy yet: {watch.seen} (timeout {check.timeout_s:g} s)")


def _services(project: _Project) -> list[str]:
    return [c.service for c in project.running.containers]


def _up(project: _Project, name: str) -> bool:
    return any(c.service == name and c.state == "running" for c in project.running.containers)


def _interval(check: HealthCheck | None) -> float:
    return max(MIN_INTERVAL_S, check.interval_s if check is not None else LIST_EVERY_S)


def _key(found: list[Observed] | None) -> tuple[object, ...]:
    return ("unknown",) if found is None else tuple(o.key() for o in found)


async def _first(*waits: Awaitable[object]) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
