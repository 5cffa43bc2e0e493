"""The Assignments gRPC service: preview, pin, apply and roll back GPU assignments."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import grpc

from gpufleet.v1 import assign_pb2 as pb
from gpufleet.v1 import assign_pb2_grpc, hub_pb2
from hub.assign import convert, mirror, procedure, targets
from hub.assign.kinds import AssignApply, AssignRollback
from hub.assign.model import AssignError, NodeOverride, Preview
from hub.configs import ConfigError, Configuration, load_directory
from hub.ops.kind import Request
from hub.ops.manager import OperationError, OperationManager
from hub.placement import GpuSlot
from hub.sessions import SessionRegistry
from hub.store import Database, Store
from hub.store.assignments import Assigned, AssignmentSets, AssignmentStore
from hub.work import Busy, Lane, Overrun, Work, WorkerDied

log = logging.getLogger(__name__)
Context = grpc.aio.ServicerContext[Any, Any]
T = TypeVar("T")
CONFIGS_LIMIT_S = 30.0
DEFAULT_LIMIT_S = 10.0  # optimal's time limit when the request names none
MAX_LIMIT_S = 120.0
# The hard limit of a placement (building the model included) is the request's limit plus this
# much; a worker still busy then is killed.
SLACK_S = 10.0
CODES = {
    "not_found": grpc.StatusCode.NOT_FOUND,
    "invalid": grpc.StatusCode.INVALID_ARGUMENT,
    "conflict": grpc.StatusCode.FAILED_PRECONDITION,
    "unavailable": grpc.StatusCode.FAILED_PRECONDITION,
    "exhausted": grpc.StatusCode.RESOURCE_EXHAUSTED,
}


class AssignmentService(assign_pb2_grpc.AssignmentsServicer):  # type: ignore[misc]
    def __init__(
        self,
        registry: SessionRegistry,
        db: Database,
        manager: OperationManager,
        configs_dir: Path,
        state_dir: Path,
        work: Work,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        models_dir: Path | None = None,
    ) -> None:
        self.work = work
        self.models_dir = models_dir
        self.registry = registry
        self.db = db
        self.manager = manager
        self.configs_dir = configs_dir
        self.state_dir = state_dir
        self.now = now
        self.store = Store(db.engine)
        self.assignments = AssignmentStore(db.engine)

    async def _fail(self, context: Context, error: AssignError | OperationError) -> NoReturn:
        await context.abort(CODES.get(error.kind, grpc.StatusCode.INVALID_ARGUMENT), str(error))
        raise AssertionError("abort returns only by raising")

    async def _in(
        self, lane: Lane, fn: Callable[..., T], *args: Any, limit_s: float, hint: str
    ) -> T:
        """CPU-heavy work in a worker of the hub's lane, never on the event loop."""
        try:
            return await lane.run(fn, *args, limit_s=limit_s, hint=hint)
        except (Busy, Overrun, WorkerDied) as exc:
            raise AssignError("exhausted", str(exc)) from None

    async def _configs(self) -> dict[str, Configuration]:
        try:
            found, _ = await self._in(
                self.work.configs, load_directory, self.configs_dir, self.models_dir,
                limit_s=CONFIGS_LIMIT_S, hint="make the configuration files smaller",
            )  # fmt: skip
        except ConfigError as exc:
            raise AssignError("conflict", str(exc)) from None
        return found

    async def _plan(self, config: Configuration, strategy: str, gpus: list[GpuSlot],
                    sets: AssignmentSets, limit_s: float = 0.0,
                    overcommit: bool = True) -> Preview:  # fmt: skip
        if not math.isfinite(limit_s) or not 0 <= limit_s <= MAX_LIMIT_S:
            raise AssignError(
                "invalid", f"the time limit must be from 0 to {MAX_LIMIT_S:g} s, got {limit_s}"
            )
        limit_s = limit_s or DEFAULT_LIMIT_S
        return await self._in(
            self.work.placement, procedure.preview, config, strategy, gpus, sets, limit_s,
            overcommit, limit_s=limit_s + SLACK_S,
            hint="name fewer nodes (--node, -l) or use a faster strategy such as balanced",
        )  # fmt: skip

    async def _configuration(self, name: str, service: str = "") -> Configuration:
        """The named configuration; unnamed: the one holding `service`, or the one in force."""
        found = await self._configs()
        if name:
            if name not in found:
                raise AssignError(
                    "not_found",
                    f"unknown configuration {name!r}: `hubctl configs` "
                    f"lists them ({', '.join(sorted(found)) or 'none'})",
                )
            return found[name]
        if service:
            holders = sorted(
                n
                for n, c in found.items()
                if service in {s.name for s in c.services if s.gpu_count > 0}
            )
        else:
            sets = await self.db.call(self.assignments.sets)
            holders = sorted(s.configuration for s in sets if s.current or s.pins)
            holders = [n for n in holders if n in found]
        if len(holders) == 1:
            return found[holders[0]]
        what = f"service {service!r}" if service else "assignments"
        where = f"is in {', '.join(holders)}" if holders else "is in no configuration"
        raise AssignError("invalid", f"{what} {where}: name the configuration with --config")

    async def _nodes(
        self, names: list[str], selector: Sequence[str] = ()
    ) -> tuple[list[str], list[str]]:
        """(chosen nodes, known nodes), as `targets.choose` picks them."""
        nodes = [node for node, _ in await self.db.call(self.store.list_nodes)]
        labels = {node.name: dict(node.labels) for node in nodes}
        connected = {s.name for s in self.registry}
        return targets.choose(names, selector, labels, connected), list(labels)

    async def _slots(self, nodes: list[str]) -> list[GpuSlot]:
        return procedure.slots(await self.db.call(self.store.placement_gpus, nodes))

    async def _write_mirror(self) -> None:
        sets = await self.db.call(self.assignments.sets)
        try:
            await asyncio.to_thread(mirror.write, self.state_dir, sets, self.now())
        except OSError as exc:
            log.error("cannot write %s: %s", self.state_dir / mirror.FILE_NAME, exc)

    async def _preview(
        self, request: pb.PreviewAssignmentsRequest | pb.ApplyAssignmentsRequest
    ) -> tuple[Preview, AssignmentSets, list[str]]:
        config = await self._configuration(request.configuration)
        chosen, _ = await self._nodes(list(request.nodes), list(request.selector))
        sets = await self.db.call(self.assignments.one, config.name)
        strategy = request.strategy or sets.strategy or "balanced"
        gpus = await self._slots(chosen)
        found = await self._plan(config, strategy, gpus, sets, request.time_limit_s,
                                 not request.no_overcommit)  # fmt: skip
        return found, sets, chosen

    async def Preview(
        self, request: pb.PreviewAssignmentsRequest, context: Context
    ) -> pb.PreviewAssignmentsResponse:
        try:
            found, _, _ = await self._preview(request)
        except AssignError as exc:
            await self._fail(context, exc)
        return convert.preview(found)

    async def Set(
        self, request: pb.SetAssignmentRequest, context: Context
    ) -> pb.SetAssignmentResponse:
        try:
            config = await self._configuration(request.configuration, request.service)
            if request.clear:
                cleared = await self.db.call(self.assignments.unpin, config.name, request.service)
                if not cleared:
                    raise AssignError(
                        "not_found",
                        f"{request.service} has no pin in {config.name}: nothing to clear",
                    )
                await self._write_mirror()
                return pb.SetAssignmentResponse(configuration=config.name, cleared=True)
            await self._nodes([request.node] if request.node else [])
            if not request.node:
                raise AssignError("invalid", "name the node: --node NODE")
            node_gpus = [g.index for g in await self._slots([request.node])]
            budget = request.vram_budget_gb if request.HasField("vram_budget_gb") else None
            demand = procedure.check_pin(
                config, request.service, request.node, list(request.gpus), node_gpus, budget
            )
            pin = Assigned(
                request.service,
                request.node,
                tuple(request.gpus),
                budget if budget is not None else demand.vram_gb,
                budget,
                "manual",
            )
            # Checked with the pin in place before it is written: a refusal changes nothing.
            sets = await self.db.call(self.assignments.one, config.name)
            pins = (*(p for p in sets.pins if p.service != pin.service), pin)
            check = await self._plan(config, "manual", await self._slots([request.node]),
                                     dataclasses.replace(sets, pins=pins))  # fmt: skip
        except AssignError as exc:
            await self._fail(context, exc)
        await self.db.call(self.assignments.pin, config.name, pin, self.now())
        await self._write_mirror()
        warnings = [
            w
            for w in check.warnings
            if w.service == request.service or (w.node == request.node and w.gpu in request.gpus)
        ]
        return pb.SetAssignmentResponse(
            configuration=config.name,
            pin=convert.assignment(pin),
            warnings=[convert.warning(w) for w in warnings],
        )

    async def _operate(
        self,
        kind: type[AssignApply],
        config: Configuration,
        overrides: list[NodeOverride],
        known: list[str],
        undo: Sequence[NodeOverride] = (),
    ) -> str:
        by_node = {o.node: convert.override_task(o) for o in overrides}
        if not by_node:
            raise AssignError(
                "invalid",
                "no nodes to send assignments to: connect agents (`hubctl nodes`) or pass --node",
            )
        operation = kind(config, by_node, {o.node: convert.override_task(o) for o in undo})
        try:
            return await self.manager.submit(Request(operation, sorted(by_node)), known)
        except OperationError as exc:
            raise AssignError(exc.kind, str(exc)) from None

    async def Apply(
        self, request: pb.ApplyAssignmentsRequest, context: Context
    ) -> hub_pb2.OperationRef:
        try:
            found, sets, chosen = await self._preview(request)
            config = await self._configuration(found.configuration)
            _, known = await self._nodes([])
            targets = set(chosen) | {a.node for a in sets.current}
            targets &= set(known)
            overrides = procedure.overrides(config, found.assigned, targets)
            # A node whose recreated services do not become healthy goes back to its part of
            # the assignments in force now (with none in force, there is no override to go
            # back to, and the node is left as it is).
            undo = procedure.overrides(config, sets.current, targets) if sets.current else []
            operation_id = await self._operate(AssignApply, config, overrides, known, undo)
        except AssignError as exc:
            await self._fail(context, exc)
        await self.db.call(self.assignments.put_in_force, config.name, found.assigned, self.now())
        await self._write_mirror()
        return hub_pb2.OperationRef(id=operation_id)

    async def Show(
        self, request: pb.ShowAssignmentsRequest, context: Context
    ) -> pb.ShowAssignmentsResponse:
        sets = await self.db.call(self.assignments.sets, request.configuration)
        return pb.ShowAssignmentsResponse(sets=[convert.assignment_set(s) for s in sets])

    async def Rollback(
        self, request: pb.RollbackAssignmentsRequest, context: Context
    ) -> hub_pb2.OperationRef:
        try:
            config = await self._configuration(request.configuration)
            sets = await self.db.call(self.assignments.one, config.name)
            if not sets.previous:
                raise AssignError(
                    "conflict",
                    f"{config.name} has no previous assignments: nothing to roll back to",
                )
            _, known = await self._nodes([])
            targets = {a.node for a in (*sets.current, *sets.previous)} & set(known)
            overrides = procedure.overrides(config, sets.previous, targets)
            operation_id = await self._operate(AssignRollback, config, overrides, known)
        except AssignError as exc:
            await self._fail(context, exc)
        await self.db.call(self.assignments.swap, config.name, self.now())
        await self._write_mirror()
        return hub_pb2.OperationRef(id=operation_id)
