"""Cluster state in SQLModel: SQLite by default, PostgreSQL by URL."""

from hub.store.db import Database, migrate, sqlite_url
from hub.store.models import Gpu, Node, NodeStatus
from hub.store.store import GpuRecord, NodeHello, Store

__all__ = [
    "Database",
    "Gpu",
    "GpuRecord",
    "Node",
    "NodeHello",
    "NodeStatus",
    "Store",
    "migrate",
    "sqlite_url",
]
