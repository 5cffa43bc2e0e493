"""The environment build operation kind: build (or install from the wheel cache) a
llama-cpp-python environment on each node, with the agent's progress (preflight, venv, fetch,
configure, compile n/m, install, upload, verify) streamed as the operation's events.

One compile per cluster: the operation's first node builds alone; the others start when it has
finished, so that a node whose wheel it uploaded installs that wheel instead of compiling the
same thing again (a node that needs another wheel, e.g. other GPU targets, still compiles).
A failed build ends with the last lines of its log as `log` events; the whole log stays on the
node (`hubctl envs logs`). Cancelling the operation cancels the build task: the agent kills the
build's processes and removes the partial environment.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from hub.envs.view import EnvBuild, NodeEnvs
from hub.ops.batches import Outcome
from hub.ops.kind import NodeRun, OperationKind
from hub.ops.steps import Cancelled, Unreachable

LOG_TAIL_LINES = 20  # of a failed build's log, as events


@dataclass
class Gate:
    """The first node to enter runs alone; the others wait until it left."""

    first: str | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def enter(self, node: str) -> None:
        if self.first is None:
            self.first = node
        elif node != self.first:
            await self.done.wait()

    def leave(self, node: str) -> None:
        if node == self.first:
            self.done.set()


async def build_on_node(run: NodeRun, spec: EnvBuild, envs: NodeEnvs, gate: Gate) -> Outcome:
    """Build `spec` on the node behind the gate; the outcome says what the agent said, and the
    node's view of its environments is updated at once (the next heartbeat says it too)."""
    await gate.enter(run.node)
    try:
        step, env = await run.agent.build_env(spec, run.check)
    except Unreachable as exc:
        return Outcome("unreachable", str(exc))
    except Cancelled as exc:
        return Outcome("cancelled", str(exc))
    finally:
        gate.leave(run.node)
    if env is not None and not run.check:
        envs.update(run.node, env)
    if step.failed and env is not None and not run.check:
        await _log_tail(run, env.name)
    if step.message:
        run.report("build", step.message)
    return Outcome(step.status, step.message)


async def _log_tail(run: NodeRun, name: str) -> None:
    try:
        step, text = await run.agent.tail_log("", LOG_TAIL_LINES, env=name)
    except (Unreachable, Cancelled):
        return
    if step.failed:
        return
    for line in text.splitlines()[-LOG_TAIL_LINES:]:
        run.report("log", line)


@dataclass(frozen=True)
class EnvBuildKind(OperationKind):
    """`hubctl envs build`: one environment on each node."""

    name = "env-build"
    spec: EnvBuild
    envs: NodeEnvs
    gate: Gate = field(default_factory=Gate)

    @property
    def configuration(self) -> str:
        return self.spec.environment

    async def run_node(self, run: NodeRun) -> Outcome:
        return await build_on_node(run, self.spec, self.envs, self.gate)
