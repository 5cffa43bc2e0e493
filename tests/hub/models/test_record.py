"""The record of the model deployment a node runs, through model switches and stops
(hub.models.record, hub.models.ops): written when a start succeeded, settled when the node's
outcome is known; a failed switch is never recorded, a rollback renews what it brought back,
and a node whose agent cannot tell what it runs keeps its record."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hub.configs import Configuration
from hub.models import deploy
from hub.models.load import parse_models
from hub.models.ops import ModelStopKind, ModelSwitchKind, moved_since
from hub.models.record import Ledger
from hub.ops.batches import Outcome
from hub.ops.kind import NodeRun
from hub.ops.remote import RemoteAgent
from hub.sessions import AgentSession
from hub.states import UNKNOWN, Running
from hub.store.deployments import Deployed

T0 = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)
MODEL = "name: {name}\nengine: llama-cpp\nsource: {{path: /x.gguf}}\nllama_cpp: {{backend: cpu}}\n"


def configured(name: str, port: int) -> Configuration:
    [model] = parse_models(MODEL.format(name=name), Path(f"/m/{name}.yaml"))
    return deploy.configuration(model, deploy.Placement((), port), 0.0)


A, B = configured("tiny-a", 8000), configured("tiny-b", 8001)
A_OTHER_PORT = configured("tiny-a", 9000)
BEFORE = Deployed("n1", "tiny-a", "llama-cpp", A.name, (), 8000, A.digest, T0)


class Clock:
    def __init__(self) -> None:
        self.at = T0

    def __call__(self) -> datetime:
        self.at += timedelta(minutes=1)
        return self.at


def ledger(target: Configuration = B, before: Deployed | None = BEFORE,
           port: int = 8001) -> tuple[Ledger, list[Deployed | None]]:  # fmt: skip
    written: list[Deployed | None] = []
    model = deploy.model_of(target.name)
    found = Ledger("n1", model, "llama-cpp", target, deploy.Placement((), port), before,
                   lambda _node, d: written.append(d), Clock())  # fmt: skip
    return found, written


def runs(config: Configuration) -> Running:
    return Running(config.name, config.digest, True)


def test_the_target_is_recorded_as_soon_as_it_started_and_kept_when_healthy() -> None:
    found, written = ledger()
    found.started(B)
    assert written == [
        Deployed(
            "n1",
            "tiny-b",
            "llama-cpp",
            B.name,
            (),
            8001,
            B.digest,
            T0 + timedelta(minutes=1),
            "cpu",
        )
    ]  # its process's environment
    found.settle(Outcome("changed", "ok"), runs(B))
    assert len(written) == 1  # settled as it was written


def test_a_failed_switch_is_never_recorded() -> None:
    found, written = ledger(before=None)
    found.started(B)  # started, then never healthy, no rollback: it runs broken
    found.settle(Outcome("failed", "not healthy"), runs(B))
    assert written[-1] is None
    found, written = ledger(before=None)
    found.settle(Outcome("failed", "start failed"), runs(B))  # never started
    assert written == []


def test_a_rollback_renews_since_and_digest_of_what_it_brought_back() -> None:
    # The same model on another port, rolled back to the recorded one (regenerated now).
    found, written = ledger(A_OTHER_PORT, port=9000)
    regenerated = configured("tiny-a", 8000)
    found.started(A_OTHER_PORT)
    found.started(regenerated)
    found.settle(Outcome("failed", "rolled back"), runs(regenerated))
    last = written[-1]
    assert last is not None and last.port == 8000 and last.digest == regenerated.digest
    assert last.started_at == T0 + timedelta(minutes=2) and last.project == A.name
    # Another model failed, the recorded one came back: renewed too.
    found, written = ledger()
    found.started(A)
    found.settle(Outcome("failed", "rolled back"), runs(A))
    assert written == [replace(BEFORE, started_at=T0 + timedelta(minutes=1))]


def test_a_rollback_to_a_configuration_or_a_stop_that_failed() -> None:
    config = Configuration("chat", Path("chat.yaml"), "", "", (), "x", "d" * 64)
    found, written = ledger()
    found.started(config)
    found.settle(Outcome("failed", "rolled back"), runs(config))
    assert written == [None]
    found, written = ledger()  # the model that ran could not be stopped: it still runs
    found.settle(Outcome("failed", "stopping model-tiny-a failed"), runs(A))
    assert written == []


def test_unknown_or_unreachable_keeps_the_record() -> None:
    found, written = ledger()
    found.settle(Outcome("failed", "cannot tell"), UNKNOWN)
    found.settle(Outcome("unreachable", "stream closed"), None)
    assert written == []


def run_on(project: Running | None) -> NodeRun:
    session = AgentSession("n1", "id", "127.0.0.1", 0.0, T0, project=project)
    return NodeRun("n1", RemoteAgent(session, "op"), project, lambda *_: None,
                   lambda *_: None, False)  # fmt: skip


def test_a_node_that_cannot_tell_what_it_runs_keeps_its_record() -> None:
    written: list[tuple[str, Deployed | None]] = []
    remember = lambda node, d: written.append((node, d))  # noqa: E731
    switch = ModelSwitchKind(B, "tiny-b", "llama-cpp", deploy.Placement((), 8001), remember,
                             stored={"n1": BEFORE})  # fmt: skip
    assert asyncio.run(switch.run_node(run_on(UNKNOWN))).result == "failed"
    stop = ModelStopKind(A.name, remember)
    assert asyncio.run(stop.run_node(run_on(UNKNOWN))).result == "failed"
    assert written == []


def test_a_node_that_runs_something_else_than_planned_is_refused() -> None:
    assert moved_since(runs(A), (A.name, A.digest)) == ""
    assert moved_since(runs(A), (A.name, "")) == ""  # not connected when planned
    assert moved_since(None, None) == ""
    assert moved_since(runs(B), (A.name, A.digest)) == (
        "ran model-tiny-a when the switch was planned, runs model-tiny-b now (another "
        "operation changed it): switch again")  # fmt: skip
    assert "started again with other settings" in moved_since(
        runs(A_OTHER_PORT), (A.name, A.digest))  # fmt: skip
    switch = ModelSwitchKind(B, "tiny-b", "llama-cpp", deploy.Placement((), 8001),
                             lambda *_: None, planned={"n1": ("", "")})  # fmt: skip
    outcome = asyncio.run(switch.run_node(run_on(runs(A))))
    assert outcome.result == "failed" and "ran nothing when the switch was planned" in (
        outcome.message)  # fmt: skip
