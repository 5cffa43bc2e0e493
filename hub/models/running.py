"""Where models run: the nodes' states joined with the deployments the hub recorded.

A node runs a model when its configuration (what its agent reports it runs, or what an
operation moved it to) is a model deployment's project, "model-NAME". The stored deployment
(`hub.store.deployments`) adds its GPUs, port and start time; a row whose project the node no
longer runs is stale and ignored. A node that runs a model the hub has no record of (its
database was replaced) is still listed, without GPUs and endpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from hub.configs import Configuration
from hub.models import deploy, plan
from hub.ops.manager import OperationManager
from hub.sessions import SessionRegistry
from hub.store import Database, Node, Store
from hub.store.deployments import Deployed, DeploymentStore
from hub.work import Work

REGENERATE_LIMIT_S = 30.0


def runs(registry: SessionRegistry, node: Node) -> str:
    """The project a node runs: its agent's word while connected, else its stored state."""
    session = registry.get(node.name)
    if session is None:
        return node.configuration
    if session.project is None:
        return ""
    return session.project.name or node.configuration  # "": it could not tell


async def regenerated(db: Database, store: Store, registry: SessionRegistry, work: Work,
                      models_dir: Path | None, image: str,
                      nodes: Sequence[str]) -> dict[str, Configuration]:  # fmt: skip
    """Per node of `nodes`, the model deployment it runs, regenerated from the current model
    file (a configuration switch drains it and may bring it back); the models lane's Busy,
    Overrun or WorkerDied when it cannot be read now."""
    if models_dir is None:
        return {}
    rows = {node.name: node for node, _ in await db.call(store.list_nodes)}
    stored = [
        plan.Stored(d.node, d.model, d.gpus, d.port)
        for d in await db.call(DeploymentStore(db.engine).all, nodes)
        if d.node in rows and runs(registry, rows[d.node]) == d.project
    ]
    if not stored:
        return {}
    hint = "make the model files smaller"
    return await work.models.run(plan.regenerated, models_dir, stored, image,
                                 limit_s=REGENERATE_LIMIT_S, hint=hint)  # fmt: skip


@dataclass(frozen=True)
class Cluster:
    """What the deployment calls of the Models service work on."""

    registry: SessionRegistry
    db: Database
    store: Store
    manager: OperationManager
    configs_dir: Path
    vllm_image: str = deploy.DEFAULT_VLLM_IMAGE

    @property
    def deployments(self) -> DeploymentStore:
        return DeploymentStore(self.db.engine)

    def runs(self, node: Node) -> str:
        return runs(self.registry, node)

    def remember(self, node: str, found: Deployed | None) -> None:
        """Record (or forget) the deployment a node runs, in the background."""
        store = self.deployments
        if found is None:
            self.db.submit(store.forget, node)
        else:
            self.db.submit(store.put, found)


@dataclass(frozen=True)
class Running:
    node: str
    model: str
    engine: str
    gpus: tuple[int, ...]
    state: str
    since: datetime | None
    endpoint: str
    message: str
    project: str


def endpoint(node: Node, port: int) -> str:
    return f"http://{node.hostname or node.name}:{port}"


def running(nodes: Sequence[Node], stored: Mapping[str, Deployed],
            runs: Callable[[Node], str]) -> list[Running]:  # fmt: skip
    """Every node that runs a model deployment, by node."""
    found = []
    for node in nodes:
        project = runs(node)
        model = deploy.model_of(project)
        if not model:
            continue
        row = stored.get(node.name)
        if row is not None and row.project != project:
            row = None  # stale: the node was switched or stopped by other means since
        found.append(Running(
            node.name, model, row.engine if row else "", row.gpus if row else (),
            node.state, row.started_at if row else node.state_since,
            endpoint(node, row.port) if row else "", node.state_message, project,
        ))  # fmt: skip
    return found


def where(found: Running) -> str:
    """'gpu-a (GPU 0,1)', 'gpu-a (cpu)', or the node alone when the hub has no record."""
    if found.gpus:
        return f"{found.node} (GPU {','.join(map(str, found.gpus))})"
    return f"{found.node} (cpu)" if found.engine else found.node
