"""The Envs gRPC service (issue 15): each node's llama-cpp-python environments with the models
running from them, building one (an `env-build` operation, hub/envs/kind.py), its build log,
removing one (refused while a model runs from it or an operation holds its node), and the
cluster's wheel cache.

What nodes reported comes from NodeEnvs (hub/envs/view.py); which model runs from which
environment from the deployment records (a node's record counts while it runs its project);
the checks and the pure parts are in hub/envs/listing.py, the wheels in hub/envs/wheels.py.
"""

from __future__ import annotations

import asyncio
from typing import Any, NoReturn

import grpc

from gpufleet.selectors import matches
from gpufleet.v1 import envs_pb2, envs_pb2_grpc, hub_pb2
from hub import limits
from hub.envs import listing
from hub.envs.cache import code
from hub.envs.kind import EnvBuildKind
from hub.envs.listing import Refusal
from hub.envs.view import EnvBuild, NodeEnvs
from hub.envs.wheels import WheelError, WheelStore, wheel_to_proto
from hub.ops.kind import Request
from hub.ops.manager import OperationManager
from hub.ops.remote import RemoteAgent
from hub.ops.steps import Unreachable
from hub.ops.submit import resolve_targets, submitted
from hub.selection import selector
from hub.sessions import SessionRegistry
from hub.store import Database, Node, Store

Context = grpc.aio.ServicerContext[Any, Any]
DEFAULT_LINES = 100
MAX_LINES = 10_000
KNOWN = "`hubctl nodes` lists the known nodes"


async def refuse(context: Context, status: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(status, message)
    raise AssertionError("abort raises")


class EnvsService(envs_pb2_grpc.EnvsServicer):  # type: ignore[misc]
    def __init__(self, envs: NodeEnvs, registry: SessionRegistry, db: Database, store: Store,
                 manager: OperationManager, wheels: WheelStore) -> None:  # fmt: skip
        self.envs = envs
        self.registry = registry
        self.db = db
        self.store = store
        self.manager = manager
        self.wheels = wheels

    async def _nodes(self) -> dict[str, Node]:
        return {node.name: node for node, _ in await self.db.call(self.store.list_nodes)}

    def _used(self) -> dict[tuple[str, str], list[str]]:
        """(node, environment) -> the models its agent says run from it."""
        return listing.users(self.envs)

    async def _targets(
        self, targets: hub_pb2.Targets, context: Context
    ) -> tuple[list[str], list[str]]:
        nodes, known = await resolve_targets(self.db, self.store, targets, context)
        unknown = [node for node in nodes if node not in known]
        if unknown:
            await refuse(context, grpc.StatusCode.NOT_FOUND,
                         f"unknown node {', '.join(unknown[:5])}: {KNOWN}")  # fmt: skip
        return nodes, known

    async def ListEnvs(self, request: envs_pb2.ListEnvsRequest,
                       context: Context) -> envs_pb2.ListEnvsResponse:  # fmt: skip
        try:
            backend = listing.check_backend(request.backend) if request.backend else ""
        except Refusal as exc:
            await refuse(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        chosen = await selector(request.selector, context)
        rows = await self._nodes()
        unknown = [node for node in request.nodes if node not in rows]
        if unknown:
            await refuse(context, grpc.StatusCode.NOT_FOUND,
                         f"unknown node {', '.join(unknown[:5])}: {KNOWN}")  # fmt: skip
        wanted = set(request.nodes)
        shown = [
            node for name, node in rows.items()
            if (not wanted or name in wanted) and matches(chosen, dict(node.labels or {}))
        ]  # fmt: skip
        used = self._used()
        found = [
            listing.node_env(node.name, env, used.get((node.name, env.name), ()),
                             self.registry.get(node.name) is not None)
            for node in shown for env in listing.listed(self.envs.of(node.name), backend)
        ]  # fmt: skip
        kept = limits.within_reply(found)
        if len(kept) < len(found):
            await refuse(context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                         f"{len(found)} environments do not fit in one reply: list fewer with "
                         "--node, -l or --backend")  # fmt: skip
        return envs_pb2.ListEnvsResponse(envs=found)

    async def BuildEnv(self, request: envs_pb2.BuildEnvRequest,
                       context: Context) -> hub_pb2.OperationRef:  # fmt: skip
        try:
            spec = EnvBuild(
                listing.check_backend(request.backend),
                listing.check_version(request.version) if request.version else "",
                listing.check_targets(request.extra_targets),
                request.no_cache,
            )
        except Refusal as exc:
            await refuse(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        nodes, known = await self._targets(request.targets, context)
        # serial 0: every node at once; the kind's gate lets the first build alone, so that
        # the others install the wheel it uploads instead of compiling it again.
        kind = EnvBuildKind(spec, self.envs)
        return await submitted(self.manager, context, Request(kind, nodes, check=request.check),
                               known)  # fmt: skip

    async def RemoveEnv(self, request: envs_pb2.RemoveEnvRequest,
                        context: Context) -> envs_pb2.RemoveEnvResponse:  # fmt: skip
        try:
            name = listing.check_name(request.name)
        except Refusal as exc:
            await refuse(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        nodes, _ = await self._targets(request.targets, context)
        if not nodes and (request.targets.all or request.targets.selector):
            await refuse(context, grpc.StatusCode.FAILED_PRECONDITION,
                         f"no nodes match: {KNOWN}")  # fmt: skip
        if not nodes:
            await refuse(context, grpc.StatusCode.INVALID_ARGUMENT,
                         f"name the nodes to remove {name} from: --node NODE, -l SELECTOR or "
                         "--all")  # fmt: skip
        down = [node for node in nodes if self.registry.get(node) is None]
        if down:
            verb = "is" if len(down) == 1 else "are"
            await refuse(context, grpc.StatusCode.FAILED_PRECONDITION,
                         f"node {', '.join(down[:5])} {verb} not connected: remove it when its "
                         "agent is back, or leave it out")  # fmt: skip
        plan = {node: listing.chosen(self.envs.of(node), name) for node in nodes}
        lines = listing.in_use(plan, self._used())
        if lines:
            await refuse(context, grpc.StatusCode.FAILED_PRECONDITION, "\n".join(lines))
        # Checked last, with no await before the removals start: an operation (a backend
        # switch, a build) may be about to run a model from the environment, or build it.
        held = [(node, self.manager.busy[node]) for node in nodes if node in self.manager.busy]
        if held:
            node, operation = held[0]
            live = self.manager.running.get(operation)
            kind = f" ({live.record.kind})" if live is not None else ""
            await refuse(context, grpc.StatusCode.FAILED_PRECONDITION,
                         f"node {node} is in operation {operation}{kind}: wait for it (hubctl "
                         f"ops watch {operation}) and try again")  # fmt: skip
        done = await asyncio.gather(*(self._remove(node, name, plan[node]) for node in nodes))
        return envs_pb2.RemoveEnvResponse(removed=[r for found in done for r in found])

    async def _remove(self, node: str, asked: str, names: list[str]) -> list[envs_pb2.RemovedEnv]:
        session = self.registry.get(node)
        if session is None:
            return [envs_pb2.RemovedEnv(node=node, name=asked, ok=False,
                                        message="its agent is not connected")]  # fmt: skip
        if not names:
            none = f"no {asked} environment on this node"
            return [envs_pb2.RemovedEnv(node=node, name=asked, ok=True, message=none)]
        agent = RemoteAgent(session, "env-rm")
        found = []
        for name in names:
            try:
                step = await agent.remove_env(name)
            except Unreachable as exc:
                found.append(envs_pb2.RemovedEnv(node=node, name=name, ok=False,
                                                 message=str(exc)))  # fmt: skip
                continue
            if not step.failed:  # gone (or never there): listings say so before the heartbeat
                self.envs.report(node, tuple(e for e in self.envs.of(node) if e.name != name))
            found.append(envs_pb2.RemovedEnv(node=node, name=name, ok=not step.failed,
                                             message=step.message))  # fmt: skip
        return found

    async def EnvLogs(self, request: envs_pb2.EnvLogsRequest,
                      context: Context) -> envs_pb2.EnvLogsResponse:  # fmt: skip
        try:
            asked = listing.check_name(request.name)
        except Refusal as exc:
            await refuse(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        node = request.node
        if not node:
            await refuse(context, grpc.StatusCode.INVALID_ARGUMENT,
                         "name the node: --node NODE (`hubctl envs` lists each node's "
                         "environments)")  # fmt: skip
        if request.lines > MAX_LINES:
            await refuse(context, grpc.StatusCode.INVALID_ARGUMENT,
                         f"--lines goes up to {MAX_LINES}, got {request.lines}")  # fmt: skip
        if await self.db.call(self.store.get_node, node) is None:
            await refuse(context, grpc.StatusCode.NOT_FOUND,
                         f"no node named {node[:64]!r}: {KNOWN}")  # fmt: skip
        session = self.registry.get(node)
        if session is None:
            await refuse(context, grpc.StatusCode.FAILED_PRECONDITION,
                         f"node {node} is not connected: its agent is down, so its build logs "
                         "cannot be read now")  # fmt: skip
        name = listing.log_env(self.envs.of(node), asked)
        if name is None:
            await refuse(context, grpc.StatusCode.NOT_FOUND,
                         f"node {node} has no {asked} environment: `hubctl envs --node {node}` "
                         "lists its environments")  # fmt: skip
        try:
            step, text = await RemoteAgent(session, "env-logs").tail_log(
                "", request.lines or DEFAULT_LINES, env=name)  # fmt: skip
        except Unreachable as exc:
            await refuse(context, grpc.StatusCode.FAILED_PRECONDITION, f"node {node}: {exc}")
        if step.failed:
            why = step.message or "the build log could not be read"
            await refuse(context, grpc.StatusCode.FAILED_PRECONDITION, f"node {node}: {why}")
        return envs_pb2.EnvLogsResponse(node=node, name=name, log=text)

    async def ListWheels(self, request: envs_pb2.ListWheelsRequest,
                         context: Context) -> envs_pb2.ListWheelsResponse:  # fmt: skip
        wheels = await asyncio.to_thread(self.wheels.list)
        carriers = listing.wheel_nodes(self.envs.items(), await self._nodes())
        return envs_pb2.ListWheelsResponse(
            wheels=[envs_pb2.CachedWheel(meta=wheel_to_proto(w), nodes=carriers.get(w.key, []))
                    for w in wheels],
            total_bytes=sum(w.size for w in wheels),
        )  # fmt: skip

    async def RemoveWheel(self, request: envs_pb2.RemoveWheelRequest,
                          context: Context) -> envs_pb2.RemoveWheelResponse:  # fmt: skip
        try:
            wheel = await asyncio.to_thread(self.wheels.resolve, request.key)
            removed = await asyncio.to_thread(self.wheels.remove, wheel.key)
        except WheelError as exc:
            await refuse(context, code(exc), str(exc))
        return envs_pb2.RemoveWheelResponse(removed=wheel_to_proto(removed))
