"""The tasks an operation sends for a configuration (drain, start, health wait), built from
the configuration; those every node of a switch gets alike are built once and copied."""

from __future__ import annotations

from collections.abc import Callable, Collection

from google.protobuf.duration_pb2 import Duration

from gpufleet.process import ProcessSpec
from gpufleet.v1 import agent_link_pb2 as pb
from hub.configs import Configuration

# A task that runs compose gets podman-compose's own limit (agent/compose.py) plus slack;
# waits get their configured timeout plus slack. Past it the hub cancels the task.
COMPOSE_LIMIT_S = 900.0 + 60.0


def seconds(value: float) -> Duration:
    duration = Duration()
    duration.FromNanoseconds(int(value * 1e9))
    return duration


def host_process(spec: ProcessSpec) -> pb.HostProcess:
    """A process project as the agent gets it in StartProject."""
    found = pb.HostProcess(service=spec.service, environment=spec.environment,
                           args=list(spec.args), env=dict(spec.env))  # fmt: skip
    if spec.health is not None:
        found.health.CopyFrom(pb.HealthCheck(
            service=spec.service, url=spec.health.url, expect_status=spec.health.expect_status,
            timeout=seconds(spec.health.timeout_s), interval=seconds(spec.health.interval_s),
            expect_model=spec.health.expect_model,
        ))  # fmt: skip
    return found


Build = Callable[[Configuration], tuple[pb.TaskRequest, float]]
# The tasks every node of a switch gets alike (drain, start, health wait of a configuration):
# built once and copied per node (one C-level copy instead of messages built field by field,
# 10,000 times over at a `switch --all`). Keyed by the configuration object, which the entry
# holds (so its id cannot be another's); a handful of configurations are in use at a time.
_BUILT: dict[tuple[str, int], tuple[Configuration, pb.TaskRequest, float]] = {}
BUILT_KEPT = 64


def built(step: str, config: Configuration, build: Build) -> tuple[pb.TaskRequest, float]:
    """A fresh copy of the step's task for `config`, and its time limit (before slack)."""
    found = _BUILT.get((step, id(config)))
    if found is None or found[0] is not config:
        if len(_BUILT) >= BUILT_KEPT:
            _BUILT.clear()
        template, limit = build(config)
        found = _BUILT[(step, id(config))] = (config, template, limit)
    request = pb.TaskRequest()
    request.CopyFrom(found[1])
    return request, found[2]


def drain(config: Configuration) -> tuple[pb.TaskRequest, float]:
    """The drain of a configuration (no probes: nothing to wait for) and its timeout."""
    probes = [
        pb.DrainProbe(service=s.name, url=s.drain.url, metric=s.drain.metric)
        for s in config.services
        if s.drain is not None
    ]
    timeout = max((s.drain.timeout_s for s in config.services if s.drain is not None),
                  default=0.0)  # fmt: skip
    drain = pb.Drain(project=config.name, probes=probes, timeout=seconds(timeout))
    return pb.TaskRequest(drain=drain), timeout


def start(config: Configuration) -> tuple[pb.TaskRequest, float]:
    if config.process is not None:  # a host process (a llama.cpp model deployment)
        start = pb.StartProject(project=config.name, digest=config.digest,
                                process=host_process(config.process))  # fmt: skip
    else:
        start = pb.StartProject(project=config.name, compose=config.text, digest=config.digest)
    return pb.TaskRequest(start_project=start), COMPOSE_LIMIT_S


def wait_healthy(
    config: Configuration, services: Collection[str] | None = None
) -> tuple[pb.TaskRequest, float]:
    """The health wait of the configuration's services (or the named ones), and its limit."""
    chosen = [s for s in config.services if services is None or s.name in services]
    checks = [
        pb.HealthCheck(
            service=s.name,
            url=s.health.url,
            expect_status=s.health.expect_status,
            timeout=seconds(s.health.timeout_s),
            interval=seconds(s.health.interval_s),
            expect_model=s.health.expect_model,
        )
        for s in chosen
    ]
    wait = pb.WaitHealthy(project=config.name, checks=checks)
    limit = max((s.health.timeout_s for s in chosen), default=0)
    return pb.TaskRequest(wait_healthy=wait), limit
