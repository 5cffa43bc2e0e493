"""Where models run: the nodes' states joined with the deployments the hub recorded.

A node runs a model when its configuration (what its agent reports it runs, or what an
operation moved it to) is a model deployment's project, "model-NAME". The stored deployment
(`hub.store.deployments`) adds its GPUs, port and start time; a row whose project the node no
longer runs is stale and ignored. A node that runs a model the hub has no record of (its
database was replaced) is still listed, without GPUs and endpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import col, select

from hub.configs import Configuration
from hub.envs.view import NodeEnvs
from hub.models import deploy, plan
from hub.models.schema import RegistryCopy
from hub.ops.manager import OperationManager
from hub.registry.entries import Entry
from hub.sessions import SessionRegistry
from hub.store import Database, Node, Store
from hub.store.deployments import Deployed, DeploymentStore
from hub.store.registry import RegistryStore
from hub.work import Work

REGENERATE_LIMIT_S = 30.0
READ_AT_ONCE = 2000  # node names per query
DOWN = "down"  # the state shown for a node whose agent is not connected


def runs(registry: SessionRegistry, node: Node) -> str:
    """The project a node runs: its agent's word while connected, else its stored state."""
    return runs_named(registry, node.name, node.configuration)


def runs_named(registry: SessionRegistry, name: str, configuration: str) -> str:
    """`runs` of the node `name` whose stored configuration is `configuration`."""
    session = registry.get(name)
    if session is None:
        return configuration
    if session.project is None:
        return ""
    return session.project.name or configuration  # "": it could not tell


async def regenerated(db: Database, registry: SessionRegistry, work: Work,
                      models_dir: Path | None, image: str,
                      nodes: Sequence[str]) -> dict[str, Configuration]:  # fmt: skip
    """Per node of `nodes`, the model deployment it runs, regenerated from the current model
    file (a configuration switch drains it and may bring it back); the models lane's Busy,
    Overrun or WorkerDied when it cannot be read now. The recorded deployments are read
    first, and the stored configurations of their nodes only (few nodes run models: a
    `switch --all` of 10,000 nodes reads no node row for the others)."""
    if models_dir is None:
        return {}
    wanted = set(nodes)
    deployed = [d for d in await db.call(DeploymentStore(db.engine).all) if d.node in wanted]
    if not deployed:
        return {}
    configured = await db.call(configurations, db.engine, [d.node for d in deployed])
    stored = [
        plan.Stored(d.node, d.model, d.gpus, d.port, d.environment)
        for d in deployed
        if d.node in configured and runs_named(registry, d.node, configured[d.node]) == d.project
    ]
    if not stored:
        return {}
    entries = [registry_copy(e) for e in (await registry_entries(db)).values()]
    hint = "make the model files smaller"
    return await work.models.run(plan.regenerated, models_dir, stored, image, entries,
                                 limit_s=REGENERATE_LIMIT_S, hint=hint)  # fmt: skip


def configurations(engine: Engine, names: Sequence[str]) -> dict[str, str]:
    """The stored configuration of each named node (that exists), by name."""
    query = select(col(Node.name), col(Node.configuration))
    found: dict[str, str] = {}
    with engine.connect() as connection:
        for at in range(0, len(names), READ_AT_ONCE):
            rows = connection.execute(
                query.where(col(Node.name).in_(names[at : at + READ_AT_ONCE]))
            )
            found.update((name, configuration) for name, configuration in rows)
    return found


def registry_copy(entry: Entry) -> RegistryCopy:
    """What the models lane needs of an entry to generate a command."""
    return RegistryCopy(entry.name, entry.layout, entry.repo, entry.revision,
                        tuple((f.path, f.size) for f in entry.files), entry.state,
                        entry.message)  # fmt: skip


async def registry_entries(db: Database) -> dict[str, Entry]:
    """The registry's entries by name."""
    return {entry.name: entry for entry in await db.call(RegistryStore(db.engine).all)}


@dataclass(frozen=True)
class Cluster:
    """What the deployment calls of the Models service work on."""

    registry: SessionRegistry
    db: Database
    store: Store
    manager: OperationManager
    configs_dir: Path
    vllm_image: str = deploy.DEFAULT_VLLM_IMAGE
    # Each node's llama-cpp-python environments (switch-backend builds what is missing).
    envs: NodeEnvs = field(default_factory=NodeEnvs)

    @property
    def deployments(self) -> DeploymentStore:
        return DeploymentStore(self.db.engine)

    def runs(self, node: Node) -> str:
        return runs(self.registry, node)

    def snapshot(self, node: Node) -> tuple[str, str]:
        """(project, digest) a node runs now; the digest "" when its agent is not connected."""
        session = self.registry.get(node.name)
        project = session.project if session is not None else None
        return runs(self.registry, node), project.digest if project is not None else ""

    def connected(self, node: Node) -> bool:
        return self.registry.get(node.name) is not None

    def advertised(self, node: Node) -> str:
        """The address the node's connected agent advertises for its servers ("": none)."""
        session = self.registry.get(node.name)
        return session.advertised if session is not None else ""

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


def endpoint(node: Node, port: int, advertised: str = "") -> str:
    """Where a node's model server on `port` is reached: the address its agent advertises,
    else its host name, else its name."""
    return f"http://{advertised or node.hostname or node.name}:{port}"


def running(nodes: Sequence[Node], stored: Mapping[str, Deployed], runs: Callable[[Node], str],
            connected: Callable[[Node], bool] = lambda _node: True,
            advertised: Callable[[Node], str] = lambda _node: "") -> list[Running]:  # fmt: skip
    """Every node that runs a model deployment, by node. A node whose agent is not connected
    is `down` (what its server does is not known), with no endpoint; `advertised` is the
    address a node's agent advertises for its servers ("": its host name)."""
    found = []
    for node in nodes:
        project = runs(node)
        model = deploy.model_of(project)
        if not model:
            continue
        row = stored.get(node.name)
        if row is not None and row.project != project:
            row = None  # stale: the node was switched or stopped by other means since
        up = connected(node)
        found.append(Running(
            node.name, model, row.engine if row else "", row.gpus if row else (),
            node.state if up else DOWN, row.started_at if row else node.state_since,
            endpoint(node, row.port, advertised(node)) if row and up else "",
            node.state_message if up else "its agent is not connected", project,
        ))  # fmt: skip
    return found


def where(found: Running) -> str:
    """'gpu-a (GPU 0,1)', 'gpu-a (cpu)', or the node alone when the hub has no record;
    ', down' added ('gpu-a (cpu, down)', 'gpu-a (down)') when its agent is not connected."""
    parts = []
    if found.gpus:
        parts.append(f"GPU {','.join(map(str, found.gpus))}")
    elif found.engine:
        parts.append("cpu")
    if found.state == DOWN:
        parts.append(DOWN)
    return f"{found.node} ({', '.join(parts)})" if parts else found.node
