"""The per-node switch procedure over a scripted node: the branches that real containers
reach only rarely (a rollback that fails too, a stop that fails)."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from hub.configs import Configuration, load_configuration
from hub.ops.batches import Outcome
from hub.ops.steps import StepResult, Switch, Unreachable
from hub.states import Running
from tests.support.procs import REPO

CONFIGS = REPO / "tests" / "fixtures" / "switch-configs"


def config(name: str) -> Configuration:
    return load_configuration(CONFIGS / f"{name}.yaml")


class ScriptedNode:
    """Answers each step from a script keyed by (step, project); records the calls."""

    def __init__(self, **script: StepResult | list[StepResult]) -> None:
        self.script = script
        self.calls: list[str] = []

    def _answer(self, step: str, project: str) -> StepResult:
        self.calls.append(f"{step} {project}")
        answer = self.script.get(f"{step}_{project}".replace("-", "_"), StepResult("changed"))
        if isinstance(answer, list):  # answers in turn, the last one repeating
            answer = answer.pop(0) if len(answer) > 1 else answer[0]
        if answer.status == "gone":
            raise Unreachable("stream closed")
        return answer

    async def drain(self, config: Configuration) -> StepResult:
        return self._answer("drain", config.name)

    async def stop(self, project: str) -> StepResult:
        return self._answer("stop", project)

    async def start(self, config: Configuration) -> StepResult:
        return self._answer("start", config.name)

    async def wait_healthy(self, config: Configuration) -> StepResult:
        return self._answer("ready", config.name)


def switch(node: ScriptedNode, running: Running | None, target: str, check: bool = False,
           rollback: bool = True) -> tuple[Outcome, list[tuple[str, str, str]]]:  # fmt: skip
    states: list[tuple[str, str, str]] = []
    previous = config(running.name) if running and running.name else None
    procedure = Switch(node, running, config(target), previous, lambda step, message: None,
                       lambda *state: states.append(state), check, rollback)  # fmt: skip
    outcome = asyncio.run(procedure.run())
    return outcome, states


def runs(name: str, up: bool = True) -> Running:
    return Running(name, config(name).digest, up)


def test_full_switch_walks_the_state_machine() -> None:
    node = ScriptedNode()
    outcome, states = switch(node, runs("alpha"), "beta")
    assert outcome.result == "changed"
    assert node.calls == ["drain alpha", "stop alpha", "start beta", "ready beta"]
    assert [s[0] for s in states] == ["draining", "switching", "switching", "loading", "ready"]


def test_rollback_that_fails_too_says_both() -> None:
    failing = StepResult("failed", "service web not healthy")
    node = ScriptedNode(ready_beta=failing, ready_alpha=StepResult("failed", "alpha broke"))
    outcome, states = switch(node, runs("alpha"), "beta")
    assert outcome == Outcome(
        "failed", "service web not healthy; rollback to alpha failed too: alpha broke"
    )
    assert states[-1] == ("failed", "alpha", "alpha broke")


def test_no_rollback_leaves_the_node_failed_on_the_target() -> None:
    node = ScriptedNode(ready_beta=StepResult("failed", "unhealthy"))
    outcome, states = switch(node, runs("alpha"), "beta", rollback=False)
    assert outcome == Outcome("failed", "unhealthy") and states[-1][:2] == ("failed", "beta")
    assert "start alpha" not in node.calls


def test_a_stop_that_fails_ends_the_switch_before_starting_anything() -> None:
    node = ScriptedNode(stop_alpha=StepResult("failed", "compose down failed: busy"))
    outcome, _ = switch(node, runs("alpha"), "beta")
    assert outcome.result == "failed" and "stopping alpha failed" in outcome.message
    assert not any(call.startswith("start") for call in node.calls)


def test_running_target_but_unhealthy_is_restarted() -> None:
    node = ScriptedNode(ready_alpha=[StepResult("failed", "HTTP 503"), StepResult("ok")])
    outcome, _ = switch(node, runs("alpha"), "alpha")
    assert outcome.result == "changed"
    assert node.calls == ["ready alpha", "drain alpha", "stop alpha", "start alpha", "ready alpha"]


def test_an_unhealthy_target_that_fails_again_is_not_rolled_back_to_itself() -> None:
    node = ScriptedNode(ready_alpha=StepResult("failed", "HTTP 503"))
    outcome, states = switch(node, runs("alpha"), "alpha")
    assert outcome == Outcome("failed", "HTTP 503; no rollback: alpha ran before")
    assert node.calls == ["ready alpha", "drain alpha", "stop alpha", "start alpha", "ready alpha"]
    assert states[-1] == ("failed", "alpha", "HTTP 503")


def test_each_start_that_succeeded_is_told_before_its_health_is_known() -> None:
    node = ScriptedNode(ready_beta=StepResult("failed", "HTTP 503"))
    told: list[str] = []
    procedure = Switch(node, runs("alpha"), config("beta"), config("alpha"),
                       lambda step, message: told.append(step), lambda *state: None,
                       on_started=lambda c: told.append(f"started {c.name}"))  # fmt: skip
    outcome = asyncio.run(procedure.run())
    assert outcome.result == "failed" and "rolled back to alpha" in outcome.message
    assert [t for t in told if t.startswith("start")] == [
        "start", "started beta", "start", "started alpha"]  # fmt: skip


def test_a_node_that_drops_mid_switch_is_unreachable() -> None:
    node = ScriptedNode(start_beta=StepResult("gone"))
    outcome, _ = switch(node, None, "beta")
    assert outcome == Outcome("unreachable", "stream closed")


def test_check_mode_touches_nothing() -> None:
    node = ScriptedNode()
    outcome, states = switch(node, runs("alpha"), "beta", check=True)
    assert outcome.result == "changed" and outcome.message.startswith("would ")
    assert node.calls == [] and states == []


def test_digest_decides_sameness(tmp_path: Path) -> None:
    edited = runs("alpha")
    stale = Running("alpha", hashlib.sha256(b"older file").hexdigest(), True)
    node = ScriptedNode()
    assert switch(node, edited, "alpha")[0].result == "ok"
    outcome, _ = switch(ScriptedNode(), stale, "alpha")
    assert outcome.result == "changed"  # same name, edited file: switched for real


def test_a_node_that_cannot_tell_what_it_runs_is_not_switched() -> None:
    from hub.states import UNKNOWN

    node = ScriptedNode()
    outcome, states = switch(node, UNKNOWN, "beta")
    assert outcome.result == "failed" and "could not tell what the node runs" in outcome.message
    assert node.calls == [] and states == []


def test_a_rollback_whose_stop_fails_does_not_start_the_previous() -> None:
    node = ScriptedNode(ready_beta=StepResult("failed", "unhealthy"),
                        stop_beta=StepResult("failed", "compose down failed"))  # fmt: skip
    outcome, _ = switch(node, runs("alpha"), "beta")
    assert outcome.result == "failed" and "rollback stopped" in outcome.message
    assert node.calls.count("start alpha") == 0


def test_a_switch_cancelled_while_loading_leaves_the_node_failed_not_ready() -> None:
    from hub.ops.steps import Cancelled

    class CancelledWhileHealthWaits(ScriptedNode):
        async def wait_healthy(self, config: Configuration) -> StepResult:
            raise Cancelled("ready", Running(config.name, config.digest, True))

    node = CancelledWhileHealthWaits()
    outcome, states = switch(node, Running("alpha", "x", True), "beta")
    assert outcome == Outcome("cancelled", "cancelled during ready")
    assert states[-1][:2] == ("failed", "beta")
    assert "not checked healthy" in states[-1][2]
    assert node.calls == ["drain alpha", "stop alpha", "start beta"]  # no rollback after a cancel


def test_a_switch_cancelled_while_draining_leaves_the_node_ready() -> None:
    from hub.ops.steps import Cancelled

    class CancelledWhileDraining(ScriptedNode):
        async def drain(self, config: Configuration) -> StepResult:
            raise Cancelled("drain", Running(config.name, config.digest, True))

    outcome, states = switch(CancelledWhileDraining(), Running("alpha", "x", True), "beta")
    assert outcome.result == "cancelled"
    assert states[-1] == ("ready", "alpha", "drain cancelled")
