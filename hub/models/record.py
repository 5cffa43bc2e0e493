"""The record of the model deployment a node runs, kept through a model switch (pure).

A switch writes the record as soon as a start succeeded (so a hub that restarts mid-switch
finds what the node was started with) and settles it when the node's outcome is known:

- the target started: the node runs the target deployment, since then;
- the rollback started the model the node ran before: its record again, with the digest it
  was regenerated with and a new since (the server was restarted);
- a configuration started (a rollback to one): no model deployment any more;
- at the end, a switch that failed records nothing of its target (the node runs it broken,
  or nothing); a node that still runs its recorded project keeps its record; a node whose
  agent cannot tell what it runs, or that dropped, keeps the record as it stands.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime

from hub.configs import Configuration
from hub.models import deploy
from hub.ops.batches import Outcome
from hub.states import UNKNOWN, Running
from hub.store.deployments import Deployed

# Writes what a node runs now: its deployment, or (node, None) when it runs no model.
Remember = Callable[[str, Deployed | None], None]
RECORDED = ("ok", "changed")
KEPT = ("unreachable",)  # what the node runs is not known: the record stays as it is


def unknown(project: Running | None) -> bool:
    """Whether the agent could not tell what the node runs."""
    return project is UNKNOWN or (project is not None and not project.name)


@dataclass
class Ledger:
    """One node's record through one model switch; `before` is the record the plan read."""

    node: str
    model: str
    engine: str
    target: Configuration
    where: deploy.Placement
    before: Deployed | None
    remember: Remember
    clock: Callable[[], datetime]
    current: Deployed | None = field(init=False)

    def __post_init__(self) -> None:
        self.current = self.before

    def _write(self, found: Deployed | None) -> None:
        self.current = found
        self.remember(self.node, found)

    def _target(self) -> Deployed:
        process = self.target.process
        return Deployed(self.node, self.model, self.engine, self.target.name, self.where.gpus,
                        self.where.port, self.target.digest, self.clock(),
                        process.environment if process is not None else "")  # fmt: skip

    def _is_target(self, found: Deployed | None) -> bool:
        return (
            found is not None
            and found.project == self.target.name
            and found.digest == self.target.digest
        )

    def started(self, config: Configuration) -> None:
        """A start step succeeded on the node (health not known yet)."""
        if config.name == self.target.name and config.digest == self.target.digest:
            self._write(self._target())
        elif self.before is not None and config.name == self.before.project:
            self._write(replace(self.before, digest=config.digest, started_at=self.clock()))
        elif self.current is not None:
            self._write(None)  # a configuration (or a model the hub has no record of)

    def settle(self, outcome: Outcome, runs: Running | None) -> None:
        """The node's outcome is known and `runs` is what its agent says it runs now."""
        if unknown(runs) or outcome.result in KEPT:
            return
        if outcome.result in RECORDED:
            runs_target = runs is not None and (runs.name, runs.digest) == (
                self.target.name, self.target.digest)  # fmt: skip
            if runs_target and not self._is_target(self.current):
                self._write(self._target())
            return
        if self._is_target(self.current):
            self._write(None)  # the target failed: never recorded as what the node runs
        elif self.current is not None and (runs is None or runs.name != self.current.project):
            self._write(None)
