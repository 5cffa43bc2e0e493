"""What one node does in a switch: drain, stop, start, ready; rollback on failure.

Written against NodeAgent (the node's side, over its stream in production) and callbacks
for state changes and progress, so the procedure is tested without processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from hub.configs import Configuration
from hub.ops.batches import Outcome
from hub.states import UNKNOWN, UNKNOWN_RUNNING, NodeState, Running, after_cancel

S = NodeState


@dataclass(frozen=True)
class StepResult:
    status: str  # ok, changed, failed
    message: str = ""
    # (step, message) events the node reported besides the step, e.g. a GPU fallback at start.
    notes: tuple[tuple[str, str], ...] = ()

    @property
    def failed(self) -> bool:
        return self.status == "failed"


class Unreachable(Exception):
    pass


class Cancelled(Exception):
    """The operation was cancelled while a node's task ran; the task was cancelled on the node
    and `running` is what the node reported it runs afterwards."""

    def __init__(self, step: str, running: Running | None) -> None:
        super().__init__(f"cancelled during {step}")
        self.step = step
        self.running = running


class NodeAgent(Protocol):
    async def drain(self, config: Configuration) -> StepResult: ...
    async def stop(self, project: str) -> StepResult: ...
    async def start(self, config: Configuration) -> StepResult: ...
    async def wait_healthy(self, config: Configuration) -> StepResult: ...


Report = Callable[[str, str], None]  # (step, message)
SetState = Callable[[NodeState, str, str], None]  # (state, configuration, message)


@dataclass
class Switch:
    agent: NodeAgent
    running: Running | None
    target: Configuration
    previous: Configuration | None  # the configuration it runs now, for rollback
    report: Report
    set_state: SetState
    check: bool = False
    rollback: bool = True
    clock: Callable[[], float] = time.monotonic
    # Told of each start step that succeeded (before its health is known): a model switch
    # records the deployment then, so a hub restarted mid-switch knows what was started.
    on_started: Callable[[Configuration], None] | None = None
    # What the starts reported besides starting (GPU fallbacks): repeated in the node's result.
    notes: list[str] = field(default_factory=list, init=False)

    async def run(self) -> Outcome:
        try:
            return await self._run()
        except Unreachable as exc:
            self.report("result", f"unreachable: {exc}")
            return Outcome("unreachable", str(exc))
        except Cancelled as exc:
            return cancelled(exc, self.set_state, self.check)

    def _runs_target(self) -> bool:
        r = self.running
        return bool(
            r and r.name == self.target.name and r.digest == self.target.digest and r.all_up
        )

    async def _run(self) -> Outcome:
        if self.running is UNKNOWN:
            return Outcome("failed", UNKNOWN_RUNNING)
        current = self.running.name if self.running else ""
        if self._runs_target():
            health = await self.agent.wait_healthy(self.target)
            if not health.failed:
                self.set_state(S.READY, self.target.name, "")
                return Outcome("ok", f"already runs {self.target.name}, healthy")
            self.report("ready", f"runs {self.target.name} but unhealthy ({health.message})")
        if self.check:
            plan = [f"drain and stop {current}"] if current else []
            plan += [f"start {self.target.name}", "wait until healthy"]
            return Outcome("changed", "would " + ", ".join(plan))
        started = self.clock()
        if current:
            stuck = await self._drain_and_stop(current)
            if stuck:
                self.set_state(S.FAILED, current, stuck)
                return Outcome("failed", stuck)
        self.set_state(S.SWITCHING, self.target.name, "")
        failure = await self._start(self.target)
        if failure is None:
            took = self.clock() - started
            self.set_state(S.READY, self.target.name, "")
            done = f"{current or 'nothing'} -> {self.target.name} in {took:.1f} s"
            return Outcome("changed", "; ".join([done, *self.notes]))
        self.set_state(S.FAILED, self.target.name, failure)
        if not (self.rollback and self.previous):
            return Outcome("failed", failure)
        if self.previous.name == self.target.name and self.previous.digest == self.target.digest:
            # What ran before is the target itself (it was unhealthy): starting it again
            # would repeat the start that just failed.
            self.report("rollback", f"skipped: {self.target.name} is what ran before")
            return Outcome("failed", f"{failure}; no rollback: {self.target.name} ran before")
        return await self._roll_back(failure, self.previous)

    async def _drain_and_stop(self, current: str) -> str | None:
        """Drain then stop what runs; the reason when it could not be stopped."""
        if self.previous is not None:
            self.set_state(S.DRAINING, current, "")
            drained = await self.agent.drain(self.previous)
            self.report("drain", drained.message)
        else:
            self.report("drain", f"no definition of {current} on the hub: nothing to drain")
        self.set_state(S.SWITCHING, self.target.name, f"stopping {current}")
        stopped = await self.agent.stop(current)
        self.report("stop", stopped.message)
        return f"stopping {current} failed: {stopped.message}" if stopped.failed else None

    async def _start(self, config: Configuration) -> str | None:
        """Start and wait until healthy; the reason when it did not become healthy."""
        started = await self.agent.start(config)
        for step, line in started.notes:
            self.report(step, line)
            self.notes.append(line)
        self.report("start", started.message)
        if started.failed:
            return f"start of {config.name} failed: {started.message}"
        if self.on_started is not None:
            self.on_started(config)
        self.set_state(S.LOADING, config.name, "")
        health = await self.agent.wait_healthy(config)
        self.report("ready", health.message)
        return health.message if health.failed else None

    async def _roll_back(self, failure: str, previous: Configuration) -> Outcome:
        self.report("rollback", f"bringing back {previous.name}")
        stopped = await self.agent.stop(self.target.name)
        self.report("stop", stopped.message)
        if stopped.failed:  # starting the previous one now would put both on the GPUs
            reason = (
                f"{failure}; rollback stopped: {self.target.name} did not stop ({stopped.message})"
            )
            self.set_state(S.FAILED, self.target.name, reason)
            return Outcome("failed", reason)
        self.set_state(S.SWITCHING, previous.name, "rolling back")
        again = await self._start(previous)
        if again is None:
            self.set_state(S.READY, previous.name, f"rolled back: {failure}")
            return Outcome("failed", f"{failure}; rolled back to {previous.name}, healthy")
        self.set_state(S.FAILED, previous.name, again)
        return Outcome("failed", f"{failure}; rollback to {previous.name} failed too: {again}")


def cancelled(exc: Cancelled, set_state: SetState, check: bool) -> Outcome:
    """A node's outcome when its operation was cancelled: its state from what it now runs."""
    if not check:
        set_state(*after_cancel(exc.running, exc.step))
    return Outcome("cancelled", str(exc))
