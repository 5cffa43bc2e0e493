"""Cluster state in SQLModel: SQLite by default, PostgreSQL by URL."""

from hub.store.db import Database, migrate, sqlite_url
from hub.store.models import Gpu, Node, NodeEvent, NodeStatus
from hub.store.store import GpuRecord, GpuTelemetryRecord, NodeHello, Store

__all__ = [
    "Database",
    "Gpu",
    "GpuRecord",
    "GpuTelemetryRecord",
    "Node",
    "NodeEvent",
    "NodeHello",
    "NodeStatus",
    "Store",
    "migrate",
    "sqlite_url",
]
