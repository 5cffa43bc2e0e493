"""ListNodes, ListGpus and GetStatus pages: the store's rows with the live state over them.

The hub is authoritative for what it holds in memory: a node is ready iff it has a session,
and a connected node's last heartbeat and GPU telemetry are its session's (the database
keeps them only now and then). `overlay` is that rule, in one place.

A page is built on a database reader thread (Database.read), rows to messages, so the event
loop stays free; it only looks sessions up (`registry.get`, a dict lookup) and reads fields
the event loop replaces whole (`telemetry`, `last_seen`), never iterates them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Protocol, TypeVar

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import Connection

from gpufleet.gpus import STATES, gpu_fields, gpu_to_proto
from gpufleet.selectors import matches
from gpufleet.v1 import hub_pb2, types_pb2
from hub import convert, limits
from hub.selection import Selector
from hub.sessions import AgentSession
from hub.states import NodeState
from hub.store.listing import Filter, GpuRow, NodeRow
from hub.store.listing import gpus as gpu_rows
from hub.store.listing import nodes as node_rows
from hub.store.models import NodeTransition

M = TypeVar("M", bound=Message)
Live = Callable[[str], AgentSession | None]  # a node's session, None when not connected
LINK = ("ready", "down")
NODE_STATES = tuple(state.value for state in NodeState)
GPU_STATES = tuple(STATES.values())
READY, DOWN = types_pb2.NODE_STATUS_READY, types_pb2.NODE_STATUS_DOWN


class Filtered(Protocol):
    """What ListNodes, ListGpus and GetStatus requests share."""

    @property
    def selector(self) -> Sequence[str]: ...
    @property
    def names(self) -> Sequence[str]: ...
    @property
    def status(self) -> Sequence[str]: ...


def chosen(
    request: Filtered, selector: Selector, live: Live, states: Iterable[str] = (),
    gpu_states: Iterable[str] = (),
) -> Filter:  # fmt: skip
    """The request's filters; limits.OutOfBounds (one line, the allowed values) for a bad one."""
    status = limits.choices("status", request.status, LINK)
    wanted = limits.choices("state", states, NODE_STATES)
    gpu_wanted = limits.choices("gpu_state", gpu_states, GPU_STATES)
    keep = None
    if (status and len(status) < len(LINK)) or selector:

        def keep(name: str, labels: Mapping[str, str]) -> bool:
            link = "ready" if live(name) is not None else "down"
            return (not status or link in status) and matches(selector, labels)

    return Filter(limits.names("names", request.names), wanted, gpu_wanted, keep)


def overlay(session: AgentSession | None, gpu: GpuRow) -> GpuRow:
    """A connected node's GPU as its session knows it: the latest telemetry and state, laid
    over the row in place (each row is its reader's own) and the row returned."""
    if session is None:
        return gpu
    gpu.state = session.gpu_states.get(gpu.index, gpu.state)
    for sample in session.telemetry:  # a handful: a loop, not a generator per GPU
        if sample.index == gpu.index:
            gpu.memory_used_mb, gpu.memory_free_mb = sample.memory_used_mb, sample.memory_free_mb
            gpu.utilization_percent = sample.utilization_percent
            gpu.temperature_c, gpu.power_draw_w = sample.temperature_c, sample.power_draw_w
            gpu.processes = sample.processes
            break
    return gpu


def stamp(moment: datetime | None) -> Timestamp | None:
    """convert.timestamp for an aware datetime, in half its time (four a node, 10,000 nodes)."""
    if moment is None:
        return None
    return Timestamp(seconds=int(moment.timestamp() // 1), nanos=moment.microsecond * 1000)


def node_to_proto(row: NodeRow, session: AgentSession | None) -> hub_pb2.Node:
    seen = session.last_seen if session is not None else row.last_seen
    return hub_pb2.Node(
        name=row.name, status=READY if session is not None else DOWN, labels=row.labels,
        hostname=row.hostname, address=row.address, agent_version=row.agent_version,
        first_seen=stamp(row.first_seen), last_seen=stamp(seen),
        status_since=stamp(row.status_since), gpu_count=row.gpu_count,
        probe=row.probe, probe_error=row.probe_error, preflight=list(row.preflight),
        state=row.state, configuration=row.configuration,
        state_since=stamp(row.state_since), state_message=row.state_message,
    )  # fmt: skip


def state_to_proto(row: NodeRow, session: AgentSession | None, operation: str
                   ) -> hub_pb2.NodeState:  # fmt: skip
    return hub_pb2.NodeState(
        node=row.name, status=READY if session is not None else DOWN, state=row.state,
        configuration=row.configuration, since=stamp(row.state_since),
        message=row.state_message, operation_id=operation,
    )  # fmt: skip


def node_detail(connection: Connection, name: str, live: Live) -> hub_pb2.Node | None:
    """GetNode's node with its GPUs, the live state over them; None when there is no such
    node. (Its events and transitions come from the caller.)"""
    wanted = Filter(names=(name,))
    rows, _ = node_rows(connection, "", 1, wanted)
    if not rows:
        return None
    session = live(name)
    gpus, _ = gpu_rows(connection, ("", -1), limits.MAX_GPUS, wanted)
    node = node_to_proto(rows[0], session)
    node.gpus.extend(gpu_to_proto(overlay(session, gpu)) for gpu in gpus)
    return node


def transition_to_proto(transition: NodeTransition) -> hub_pb2.StateTransition:
    return hub_pb2.StateTransition(
        at=convert.timestamp(transition.at), from_state=transition.from_state,
        to_state=transition.to_state, configuration=transition.configuration,
        operation_id=transition.operation_id, message=transition.message,
    )  # fmt: skip


def fitted(items: list[M], keys: list[str], following: str) -> tuple[list[M], str]:
    """The items that fit in one reply (limits.REPLY_BYTES) and the page token after them."""
    kept = limits.within_reply(items, limits.REPLY_BYTES)
    if len(kept) < len(items):
        following = keys[len(kept) - 1]
    return kept, following


def nodes_page(
    connection: Connection, after: str, size: int, wanted: Filter, live: Live
) -> tuple[list[hub_pb2.Node], str]:
    """A ListNodes page and its next page token (on a reader thread)."""
    rows, following = node_rows(connection, after, size, wanted)
    items = [node_to_proto(row, live(row.name)) for row in rows]
    kept, last = fitted(items, [row.name for row in rows], following)
    return kept, limits.Page.token(last) if last else ""


def states_page(
    connection: Connection, after: str, size: int, wanted: Filter, live: Live,
    busy: Callable[[str], str | None],
) -> tuple[list[hub_pb2.NodeState], str]:  # fmt: skip
    """A GetStatus page and its next page token (on a reader thread)."""
    rows, following = node_rows(connection, after, size, wanted)
    items = [state_to_proto(row, live(row.name), busy(row.name) or "") for row in rows]
    kept, last = fitted(items, [row.name for row in rows], following)
    return kept, limits.Page.token(last) if last else ""


def gpus_page(
    connection: Connection, after: tuple[str, int], size: int, wanted: Filter, live: Live
) -> tuple[list[hub_pb2.NodeGpu], str]:
    """A ListGpus page and its next page token (on a reader thread). A state filter runs in
    SQL on the stored state (written as soon as a GPU is lost or back) and again on the live
    one laid over it."""
    rows, following = gpu_rows(connection, after, size, wanted)
    items: list[hub_pb2.NodeGpu] = []
    keys: list[tuple[str, int]] = []
    for row in rows:
        session = live(row.node)
        gpu = overlay(session, row)
        if wanted.gpu_states and gpu.state not in wanted.gpu_states:
            continue
        status = READY if session is not None else DOWN
        items.append(hub_pb2.NodeGpu(node=row.node, node_status=status, gpu=gpu_fields(gpu)))
        keys.append((row.node, row.index))
    kept = limits.within_reply(items, limits.REPLY_BYTES)
    if len(kept) < len(items):
        following = keys[len(kept) - 1]
    return kept, limits.Page.token(*following) if following else ""
