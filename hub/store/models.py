"""Tables. Changing one means a new Alembic revision under migrations/versions/."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Column, DateTime, ForeignKey, Integer, String, UniqueConstraint
from sqlmodel import Field, SQLModel


class NodeStatus(StrEnum):
    READY = "ready"
    DOWN = "down"


def _utc_column(nullable: bool) -> Column[datetime]:
    return Column(DateTime(timezone=True), nullable=nullable)


class Node(SQLModel, table=True):
    __tablename__ = "node"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True, max_length=253)
    agent_id: str = Field(default="", max_length=64)
    status: str = Field(default=NodeStatus.DOWN.value, max_length=16)
    labels: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    hostname: str = Field(default="", max_length=253)
    address: str = Field(default="", max_length=128)
    agent_version: str = Field(default="", max_length=64)
    probe: str = Field(default="", max_length=32)
    probe_error: str = Field(default="")
    # The agent's podman preflight: what will fail when it runs a project, each with its fix.
    preflight: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    first_seen: datetime = Field(sa_column=_utc_column(nullable=False))
    last_seen: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    status_since: datetime = Field(sa_column=_utc_column(nullable=False))
    # The switch state machine: stopped -> switching -> loading -> ready | failed; ready ->
    # draining -> switching. `configuration` is what the node runs (or is switching to).
    state: str = Field(default="stopped", max_length=16)
    configuration: str = Field(default="", max_length=64)
    state_since: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    state_message: str = Field(default="")


class Gpu(SQLModel, table=True):
    __tablename__ = "gpu"
    __table_args__ = (UniqueConstraint("node_id", "index", name="uq_gpu_node_index"),)

    id: int | None = Field(default=None, primary_key=True)
    node_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("node.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    index: int
    uuid: str = Field(max_length=96)
    name: str = Field(default="", max_length=128)
    vendor: str = Field(default="", max_length=16)
    memory_total_mb: int = 0
    memory_used_mb: int = 0
    compute_capability: str = Field(default="", max_length=16)
    state: str = Field(default="ok", max_length=8)
    memory_free_mb: int | None = None
    utilization_percent: int | None = None
    temperature_c: float | None = None
    power_draw_w: float | None = None
    power_limit_w: float | None = None
    gfx_target: str = Field(default="", max_length=16)
    pci_bus_id: str = Field(default="", max_length=32)
    driver_version: str = Field(default="", max_length=32)
    # [[pid, used MiB, managed], ...] as the driver reported them; managed is 1 when the process
    # runs in a container gpufleet started (older rows have no third value: not managed).
    processes: list[list[int]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class NodeEvent(SQLModel, table=True):
    """Something the hub noticed about a node (a GPU lost or back)."""

    __tablename__ = "node_event"

    id: int | None = Field(default=None, primary_key=True)
    node_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("node.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    at: datetime = Field(sa_column=_utc_column(nullable=False))
    kind: str = Field(max_length=32)
    message: str


class NodeTransition(SQLModel, table=True):
    """Every change of a node's switch state, with its time."""

    __tablename__ = "node_transition"

    id: int | None = Field(default=None, primary_key=True)
    node_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("node.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    at: datetime = Field(sa_column=_utc_column(nullable=False))
    from_state: str = Field(max_length=16)
    to_state: str = Field(max_length=16)
    configuration: str = Field(default="", max_length=64)
    operation_id: str = Field(default="", max_length=32)
    message: str = ""


class Operation(SQLModel, table=True):
    __tablename__ = "operation"

    id: str = Field(primary_key=True, max_length=32)
    kind: str = Field(max_length=16)
    configuration: str = Field(default="", max_length=64)
    status: str = Field(default="running", max_length=16, index=True)
    check: bool = False
    params: dict[str, object] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created: datetime = Field(sa_column=_utc_column(nullable=False))
    finished: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    message: str = ""


class OperationNode(SQLModel, table=True):
    """One node's part in an operation and how it ended."""

    __tablename__ = "operation_node"
    __table_args__ = (UniqueConstraint("operation_id", "node", name="uq_operation_node"),)

    id: int | None = Field(default=None, primary_key=True)
    operation_id: str = Field(
        sa_column=Column(
            String(32), ForeignKey("operation.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    node: str = Field(max_length=253)
    position: int = 0
    result: str = Field(default="pending", max_length=16)
    message: str = ""
    started: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    finished: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    progress_dropped: int = 0
    # What a check found that may keep the node from running the configuration well.
    warnings: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class OperationEvent(SQLModel, table=True):
    __tablename__ = "operation_event"

    id: int | None = Field(default=None, primary_key=True)
    operation_id: str = Field(
        sa_column=Column(
            String(32), ForeignKey("operation.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    seq: int
    at: datetime = Field(sa_column=_utc_column(nullable=False))
    node: str = Field(default="", max_length=253)
    step: str = Field(max_length=16)
    message: str = ""
    # An agent's progress report from inside a task (step is then the task's phase).
    progress: bool = False
    percent: float | None = None
