"""Scale from zero and the idle unload: one decision loop per hub, every start and stop a hub
operation (the usual model switch and model stop, with their rollback and records).

`ensure` answers a gateway's EnsureModel: a model that runs nowhere is started on the node
`hub.gateway.placement` picks, through the Models service's own switch
(`hub.models.deployments.switch`), on its gateway.port. A model already starting answers
with that operation (concurrent calls share one start); one being stopped answers
"starting" and is started afresh once the stop has finished. `tick` (every TICK_S) learns
how the starts it made ended, makes those deferred starts, and stops the models that are
idle (`hub.gateway.idle`). A lock serialises their decisions, so an idle stop and a new
request never race: the request either sees the stop under way or comes before it. The slow
part of a start (planning it in the models lane, at most PLAN_LIMIT_S) runs outside the lock
as one pending start per model, which concurrent calls share and which holds its node from
other starts; a model with a pending start is `starting` and never idle. The loop decides
nothing until a gateway first called this hub (a hub without gateways is left as it was),
and stops nothing for idleness until one report window later (every live gateway has
reported by then).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import grpc
import sqlalchemy.exc

from hub.gateway import placement
from hub.gateway.idle import Activity, Candidate, Seen, idle
from hub.gateway.observe import NotDefined, Observer, Snapshot, resolve
from hub.gateway.pending import Pending
from hub.gateway.routes import Starting
from hub.models import catalog, deploy, deployments
from hub.models.deployments import Refused, SwitchAsk
from hub.models.load import ModelError
from hub.models.running import DOWN, Cluster
from hub.registry.kinds import Fetching
from hub.states import NodeState
from hub.store.db import describe
from hub.store.store import PlacementGpu
from hub.work import Busy, Overrun, Work, WorkerDied

log = logging.getLogger(__name__)
T = TypeVar("T")
TICK_S = 1.0
REPORT_INTERVAL_S = 2.0  # how often gateways report their activity
WINDOW_INTERVALS = 3  # reports older than this many intervals are dropped
PLAN_LIMIT_S = 10.0  # well within the gateway's EnsureModel deadline (30 s)
SWITCH, STOP = "model-switch", "model-stop"
DEFERRED_LOOKS = 5  # ticks a start deferred behind a stop looks for the model gone


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Ensured:
    state: str  # ready | starting
    operation_id: str = ""
    nodes: tuple[str, ...] = ()
    message: str = ""


class Scaler:
    def __init__(self, cluster: Cluster, observer: Observer, models_dir: Path, work: Work,
                 clock: Callable[[], datetime] = utcnow,
                 report_interval_s: float = REPORT_INTERVAL_S,
                 fetching: Fetching | None = None) -> None:  # fmt: skip
        self.cluster = cluster
        # The registry's store and the nodes' caches: a model from the registry is fetched
        # first where a start lands, and placement prefers nodes that hold it.
        self.fetching = fetching
        self.observer = observer
        self.models_dir = models_dir
        self.work = work
        self.clock = clock
        self.report_interval_s = report_interval_s
        self.activity = Activity(report_interval_s * WINDOW_INTERVALS)
        self.failures: dict[str, str] = {}  # model -> why its last start by a gateway failed
        self._starts: dict[str, str] = {}  # model -> the operation starting it for a gateway
        # model -> (the stop to wait for, then start it; looks left once it ended)
        self._after_stop: dict[str, tuple[str, int]] = {}
        self._lock = asyncio.Lock()
        # Set by the first gateway call: a hub no gateway follows decides nothing (and reads
        # neither its models nor its database for it).
        self.active = False
        self.active_since: datetime | None = None
        # Called when a start or stop was submitted: the routing table goes out at once.
        self.changed: Callable[[], None] = lambda: None
        # model -> its start being planned (outside the lock)
        self._pending: Pending[Ensured] = Pending(lambda: self.changed())
        self._counts: tuple[datetime, dict[str, int]] | None = None

    def activate(self) -> None:
        """A gateway called: the decision loop runs from now on."""
        if not self.active:
            self.active, self.active_since = True, self.clock()

    def unloads(self, now: datetime) -> bool:
        """Whether idle stops are decided now: a report window after the loop was switched on
        (every live gateway has reported by then; what a restarted hub has not heard yet is
        not idleness)."""
        return self.active_since is not None and now - self.active_since >= self.activity.window

    def replica_in_flight(self) -> dict[str, int]:
        """Endpoint -> requests in flight over the live gateways, as of the last report
        interval (the table changes for these counts at most that often)."""
        now = self.clock()
        if self._counts is None or now - self._counts[0] >= self.activity.window / WINDOW_INTERVALS:
            self._counts = (now, self.activity.replicas(now))
        return self._counts[1]

    def in_flight(self, kind: str) -> dict[str, Starting]:
        """model -> its operation of `kind` under way (a switch to it, or a stop of it)."""
        found = {}
        for run in self.cluster.manager.running.values():
            record = run.record
            model = deploy.model_of(record.configuration)
            if record.kind == kind and model and not record.check:
                found[model] = Starting(record.id, tuple(record.params.get("nodes", ())))
        return found

    def starting(self) -> dict[str, Starting]:
        """model -> its start under way: a switch to it, or a stop a start waits for."""
        found = {
            model: Starting(stop, (), f"being stopped (operation {stop}): it starts again once "
                                      "that has finished")
            for model, (stop, _) in self._after_stop.items()
        }  # fmt: skip
        return {**found, **self._pending.starting(), **self.in_flight(SWITCH)}

    async def ensure(self, name: str) -> Ensured:
        """Refused (NOT_FOUND with close names, FAILED_PRECONDITION when no node is free...)."""
        async with self._lock:
            snap = await self.observer.snapshot()
            try:
                model = resolve(snap.models, name)
            except NotDefined as exc:
                raise Refused(grpc.StatusCode.NOT_FOUND, str(exc)) from None
            found = await self._ensure(snap, model.name)
        if isinstance(found, Ensured):
            return found
        return await asyncio.shield(found)

    async def _ensure(self, snap: Snapshot, model: str) -> Ensured | asyncio.Task[Ensured]:
        """What the model is at, or its pending start (to wait for outside the lock)."""
        pending = self._pending.get(model)
        if pending is not None:
            return pending
        switching = self.in_flight(SWITCH).get(model)
        if switching is not None:
            why = f"model {model} is starting (operation {switching.operation_id})"
            return Ensured("starting", switching.operation_id, switching.nodes, why)
        stopping = self.in_flight(STOP).get(model)
        if stopping is not None:
            self._after_stop[model] = (stopping.operation_id, DEFERRED_LOOKS)
            return Ensured("starting", stopping.operation_id, stopping.nodes,
                           f"model {model} is being stopped (operation {stopping.operation_id}): "
                           "it starts again once that has finished")  # fmt: skip
        mine = [r for r in snap.found if r.model == model and r.state != DOWN]
        if any(snap.serving.get(r.node) == r.project for r in mine):
            return Ensured("ready", nodes=tuple(r.node for r in mine))
        alive = [r for r in mine if r.state != NodeState.FAILED.value]
        if alive:
            return Ensured("starting", nodes=tuple(r.node for r in alive),
                           message=f"model {model} is loading")  # fmt: skip
        # A model that failed where it runs starts again there (nothing else is displaced).
        nodes = [r.node for r in mine] or [await self._place(snap, snap.entries[model])]
        return self._pending.begin(model, nodes, self._start(snap, model, nodes))

    async def _place(self, snap: Snapshot, entry: catalog.Entry) -> str:
        cluster = self.cluster
        gpus: dict[str, list[PlacementGpu]] = {name: [] for name in snap.nodes}
        for g in await cluster.db.call(cluster.store.placement_gpus, list(snap.nodes)):
            if g.state != "lost":
                gpus[g.node].append(g)
        busy = cluster.manager.busy
        planned = self._pending.held()
        held = (placement.cached_on(entry.model, self.fetching.caches)
                if self.fetching is not None else frozenset())  # fmt: skip
        places = [
            placement.Place(
                name, name in snap.connected, planned.get(name) or cluster.runs(node),
                busy.get(name, ""),
                len(gpus[name]), sum(max(0, g.memory_total_mb - g.foreign_mb) for g in gpus[name]),
                cached=name in held,
            )
            for name, node in snap.nodes.items()
        ]  # fmt: skip
        needed = entry.gpus_needed if entry.gpus_needed is not None else 1
        try:
            return placement.pick(entry.model.name, needed, entry.model.gateway.node, places)
        except placement.NoNode as exc:
            raise Refused(grpc.StatusCode.FAILED_PRECONDITION, str(exc)) from None

    async def _start(self, snap: Snapshot, model: str, nodes: list[str]) -> Ensured:
        entry = snap.entries[model]
        ask = SwitchAsk(model, nodes, list(snap.nodes), gpu_count=entry.gpus_needed or 0,
                        port=entry.model.gateway.port)  # fmt: skip
        operation_id = await deployments.switch(self.cluster, self.models_dir, self._read, ask,
                                                self.fetching)  # fmt: skip
        self._starts[model] = operation_id
        self.failures.pop(model, None)
        log.info("gateway: starting model %s on %s (operation %s)", model, ", ".join(nodes),
                 operation_id)  # fmt: skip
        return Ensured("starting", operation_id, tuple(nodes),
                       f"model {model} is starting on {', '.join(nodes)}")  # fmt: skip

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await self.work.models.run(fn, *args, limit_s=PLAN_LIMIT_S,
                                              hint="make the model files smaller")  # fmt: skip
        except (Busy, Overrun, WorkerDied) as exc:
            raise Refused(grpc.StatusCode.RESOURCE_EXHAUSTED, busy_line(exc)) from None
        except catalog.NotFound as exc:
            raise Refused(grpc.StatusCode.NOT_FOUND, str(exc)) from None
        except ModelError as exc:
            raise Refused(grpc.StatusCode.FAILED_PRECONDITION, str(exc)) from None

    def report(self, gateway: str, models: Mapping[str, Seen]) -> float:
        """A gateway's activity; the interval it should report at."""
        self.activity.report(gateway, self.clock(), models)
        return self.report_interval_s

    async def run(self) -> None:
        """The decision loop, until cancelled."""
        failing = ""
        while True:
            await asyncio.sleep(TICK_S)
            if not self.active:
                continue
            try:
                await self.tick()
            except sqlalchemy.exc.SQLAlchemyError as exc:  # the next tick tries again
                if describe(exc) != failing:
                    log.warning("gateway scaler: cannot read the database: %s", describe(exc))
                failing = describe(exc)
            except Exception:  # a bug: logged, and the next tick tries again
                log.exception("gateway scaler: tick failed")
            else:
                failing = ""

    async def tick(self) -> None:
        async with self._lock:
            snap = await self.observer.snapshot()
            await self._settle(snap)
            await self._deferred(snap)
            await self._unload(snap)

    async def _settle(self, snap: Snapshot) -> None:
        """Learn how the starts made for gateways ended: a failed one is the model's state
        until it is ready, or started again."""
        manager = self.cluster.manager
        for model, operation_id in list(self._starts.items()):
            if operation_id in manager.running:
                continue
            del self._starts[model]
            record = await self.cluster.db.call(manager.store.get, operation_id)
            if record is None:
                continue
            record = manager.truthful(record)
            if record.status != "succeeded":
                why = "; ".join(f"{n.node}: {n.message}" for n in record.nodes
                                if n.result != "ok" and n.message) or record.message  # fmt: skip
                self.failures[model] = f"its start failed (operation {operation_id}): {why}"
        for r in snap.found:
            if snap.serving.get(r.node) == r.project:
                self.failures.pop(r.model, None)
        for model in self.in_flight(SWITCH):  # started again, by anyone
            self.failures.pop(model, None)

    async def _deferred(self, snap: Snapshot) -> None:
        """Start the models asked for while they were being stopped, once the stop ended (on
        a snapshot taken after it ended: the one before may still show the model running)."""
        running = self.cluster.manager.running
        ended = [model for model, (stop, _) in self._after_stop.items() if stop not in running]
        if ended:
            snap = await self.observer.snapshot()
        for model in ended:
            stop, looks = self._after_stop.pop(model)
            if model not in snap.entries:
                continue
            try:
                found = await self._ensure(snap, model)
            except Refused as exc:
                self._cannot_start(model, exc)
                continue
            if isinstance(found, asyncio.Task):
                found.add_done_callback(functools.partial(self._started_again, model))
            elif not found.operation_id and looks > 1:
                # It still looks up: an agent's report sent before the stop can say so for a
                # heartbeat. Look again next tick; a model that really runs stays as it is.
                self._after_stop[model] = (stop, looks - 1)

    def _cannot_start(self, model: str, exc: Refused) -> None:
        self.failures[model] = str(exc)
        log.warning("gateway: cannot start model %s again: %s", model, exc)

    def _started_again(self, model: str, task: asyncio.Task[Ensured]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, Refused):
            self._cannot_start(model, exc)
        elif exc is not None:
            log.error("gateway: cannot start model %s again", model, exc_info=exc)

    async def _unload(self, snap: Snapshot) -> None:
        """Stop the models idle for their idle_ttl, where no operation holds them; nothing
        until a report window has passed since the loop started."""
        now = self.clock()
        if not self.unloads(now):
            return
        busy = self.cluster.manager.busy
        ops = {**self.in_flight(SWITCH), **self.in_flight(STOP)}
        candidates, where = [], {}
        for name, entry in snap.entries.items():
            ttl = entry.model.gateway.idle_ttl
            if ttl is None or name in ops or name in self._after_stop or name in self._pending:
                continue
            mine = [r for r in snap.found if r.model == name and r.node in snap.connected]
            if not any(snap.serving.get(r.node) == r.project for r in mine):
                continue
            nodes = [r.node for r in mine if r.node not in busy]
            starts = [snap.stored[r.node].started_at for r in mine if r.node in snap.stored]
            if nodes:
                candidates.append(Candidate(name, ttl, max(starts, default=None)))
                where[name] = nodes
        for name in idle(candidates, self.activity.seen(now), now):
            try:
                operation_id = await deployments.stop(
                    self.cluster, deploy.project(name), where[name], list(snap.nodes)
                )
            except Refused as exc:
                log.warning("gateway: cannot stop idle model %s: %s", name, exc)
                continue
            self.changed()  # its replicas take no more requests: every gateway learns at once
            log.info("gateway: model %s idle for %g s: stopping it on %s (operation %s)",
                     name, snap.entries[name].model.gateway.idle_ttl, ", ".join(where[name]),
                     operation_id)  # fmt: skip


def busy_line(exc: Exception) -> str:
    """One line for the models lane's refusal: the hub is busy."""
    line = str(exc).splitlines()[0] if str(exc) else "its worker ended"
    if line.startswith("the hub is busy"):
        return line
    return f"the hub is busy: planning the start failed ({line}): try again in a moment"
