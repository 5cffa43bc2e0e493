"""Cluster state in SQLModel: SQLite by default, PostgreSQL by URL."""

from hub.store.assignments import GpuAssignment
from hub.store.backends import ModelBackend
from hub.store.db import Database, migrate, sqlite_url
from hub.store.deployments import ModelDeployment
from hub.store.keys import ApiKeyRow
from hub.store.models import Gpu, Node, NodeEvent, NodeStatus
from hub.store.registry import RegistryEntryRow
from hub.store.store import GpuRecord, GpuTelemetryRecord, NodeHello, Store
from hub.store.trust import AuditEntry, Credential, JoinToken, TrustStore
from hub.store.usage import GpuSampleRow, GpuUsageMark, GpuUsageRow

__all__ = [
    "ApiKeyRow",
    "AuditEntry",
    "Credential",
    "Database",
    "Gpu",
    "GpuAssignment",
    "GpuRecord",
    "GpuSampleRow",
    "GpuTelemetryRecord",
    "GpuUsageMark",
    "GpuUsageRow",
    "JoinToken",
    "ModelBackend",
    "ModelDeployment",
    "Node",
    "NodeEvent",
    "NodeHello",
    "NodeStatus",
    "RegistryEntryRow",
    "Store",
    "TrustStore",
    "migrate",
    "sqlite_url",
]
