"""What the gateway's table and scaler read of the hub at one moment: a Snapshot.

The model definitions are read like the Models service reads them (in the models lane, never
on the event loop), but only when the models directory changed: its files' names, sizes and
modification times (and the cluster's largest GPU, and the backend associations, which the
estimates depend on) are the cache key, so a table recomputed every fraction of a second does
not parse every file each time. Where models run is `hub.models.running`; which nodes serve
their project healthily is each connected agent's last report (`hub.states.observed`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hub.configs import SUFFIXES
from hub.models import catalog, deploy
from hub.models.load import ModelError, find
from hub.models.running import Cluster, Running, running
from hub.models.schema import Model
from hub.states import NodeState, observed
from hub.store import Node
from hub.store.backends import BackendStore
from hub.store.deployments import Deployed
from hub.work import Busy, Overrun, Work, WorkerDied

log = logging.getLogger(__name__)
LISTING_LIMIT_S = 30.0
Signature = tuple[tuple[str, int, int], ...] | None


@dataclass(frozen=True)
class Snapshot:
    entries: Mapping[str, catalog.Entry]  # by model name
    errors: tuple[str, ...]
    nodes: Mapping[str, Node]
    found: tuple[Running, ...]  # every node that runs a model
    serving: Mapping[str, str]  # node -> the project whose services are all healthy there
    stored: Mapping[str, Deployed]  # node -> its deployment record
    connected: frozenset[str] = field(default_factory=frozenset)

    @property
    def models(self) -> list[Model]:
        return [entry.model for entry in self.entries.values()]


class NotDefined(ModelError):
    """No model has that name, alias or served name (the line lists close names)."""


def resolve(models: Sequence[Model], name: str) -> Model:
    """The model `name` names: its name or an alias, else its served name."""
    by_name = {model.name: model for model in models}
    try:
        return find(by_name, name)
    except ModelError as exc:
        served = [model for model in models if model.served_model_name == name]
        if served:
            return served[0]
        raise NotDefined(str(exc)) from None


def signature(directory: Path) -> Signature:
    """The model files' (name, size, mtime) as `hub.models.load` would read them; None when
    the directory cannot be listed (the listing then says why)."""
    try:
        found = []
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.name.startswith(".") or Path(entry.name).suffix not in SUFFIXES:
                    continue
                info = entry.stat()
                found.append((entry.name, info.st_size, info.st_mtime_ns))
    except OSError:
        return None
    return tuple(sorted(found))


class Observer:
    def __init__(self, cluster: Cluster, models_dir: Path, work: Work) -> None:
        self.cluster = cluster
        self.models_dir = models_dir
        self.work = work
        self._key: object = object()
        self._listing: tuple[dict[str, catalog.Entry], tuple[str, ...]] = ({}, ())

    async def catalog(self) -> tuple[dict[str, catalog.Entry], tuple[str, ...]]:
        """Every model by name, and one line per file that does not load (or why none)."""
        cluster = self.cluster
        gpus = await cluster.db.call(cluster.store.list_gpus)
        largest = max((g.memory_total_mb for _, g in gpus if g.state != "lost"), default=0)
        associated = await cluster.db.call(BackendStore(cluster.db.engine).all)
        environments = {model: a.environment for model, a in associated.items()}
        files = await asyncio.to_thread(signature, self.models_dir)
        key = (files, largest, tuple(sorted(environments.items())))
        if key == self._key:
            return self._listing
        try:
            entries, errors = await self.work.models.run(
                catalog.listing, self.models_dir, largest or None, environments,
                limit_s=LISTING_LIMIT_S, hint="make the model files smaller",
            )  # fmt: skip
        except (Busy, Overrun, WorkerDied) as exc:  # read again next time
            log.warning("gateway routes: cannot read the models now: %s", exc)
            return self._listing if self._listing[0] else ({}, (str(exc),))
        except ModelError as exc:  # the directory itself
            entries, errors = [], [str(exc)]
        self._key = key
        self._listing = ({e.model.name: e for e in entries}, tuple(errors))
        return self._listing

    async def snapshot(self) -> Snapshot:
        cluster = self.cluster
        entries, errors = await self.catalog()
        nodes = [node for node, _ in await cluster.db.call(cluster.store.list_nodes)]
        stored = {d.node: d for d in await cluster.db.call(cluster.deployments.all)}
        serving = {}
        for session in cluster.registry:
            state, project, _ = observed(session.project)
            if state == NodeState.READY and deploy.model_of(project):
                serving[session.name] = project
        return Snapshot(
            entries, errors, {node.name: node for node in nodes},
            tuple(running(nodes, stored, cluster.runs, cluster.connected, cluster.advertised)),
            serving, stored,
            frozenset(session.name for session in cluster.registry),
        )  # fmt: skip
