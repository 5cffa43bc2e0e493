"""What a node runs, from the agent's protobuf: the one place RunningProject, a cancelled
task's last word and an assignment's GPU fallbacks become domain values."""

from __future__ import annotations

from gpufleet.v1 import agent_link_pb2 as pb
from hub import limits
from hub.states import Running, Service


def fallback_lines(report: pb.AssignmentReport) -> list[tuple[str, str]]:
    """("fallback", message) events for the GPUs a node used instead of the assigned ones."""
    return [
        (
            "fallback",
            f"{f.service}: GPU {','.join(map(str, f.assigned))} unavailable ({f.reason}); "
            f"using GPU {','.join(map(str, f.used))}",
        )
        for f in report.fallbacks
    ]


HEALTH_WORDS = ("healthy", "unhealthy", "unchecked")
MESSAGE_CHARS = 300
MAX_SERVICES = 256


def running_from_proto(project: pb.RunningProject) -> Running:
    """What a node runs, with each service's health when the agent's monitor reported it (a
    health word the hub does not know counts as unchecked)."""
    services = tuple(
        Service(
            limits.message(s.name, 128),
            limits.message(s.state, 32),
            (s.health if s.health in HEALTH_WORDS else "unchecked") if s.health else "",
            limits.message(s.health_message, MESSAGE_CHARS),
        )
        for s in project.services[:MAX_SERVICES]
    )
    return Running(
        # Cut and cleaned: they become the node's configuration column and its transitions.
        limits.message(project.name, 64),
        limits.message(project.digest, 64),
        bool(services) and all(s.state == "running" for s in services),
        services,
    )


def ran_after_cancel(answer: pb.TaskResult, before: Running | None) -> Running | None:
    """What a node runs after a cancelled task, from the project its result carries."""
    if answer.HasField("assignment") and answer.assignment.HasField("project"):
        project = answer.assignment.project
    elif answer.HasField("project"):
        project = answer.project
    else:
        return before
    return running_from_proto(project) if project.services else None
