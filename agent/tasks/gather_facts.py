"""gather_facts: probe the host's GPUs again and return the inventory."""

from __future__ import annotations

import asyncio

from agent.convert import inventory_to_proto
from agent.probes import ProbeResult
from agent.tasks.base import TaskKind
from agent.tasks.context import TaskContext
from agent.tasks.outcome import Outcome, Status
from gpufleet.v1 import agent_link_pb2 as pb


class GatherFacts(TaskKind[None, ProbeResult]):
    kind = "gather_facts"

    def parse(self, request: pb.TaskRequest) -> None:
        return None

    async def run(self, ctx: TaskContext, spec: None, check: bool) -> Outcome[ProbeResult]:
        found = await asyncio.to_thread(ctx.probe.inventory)
        return Outcome(Status.OK, f"{len(found.gpus)} GPUs ({found.probe})", found)

    def fill(self, result: pb.TaskResult, data: ProbeResult) -> None:
        result.facts.CopyFrom(inventory_to_proto(data))
