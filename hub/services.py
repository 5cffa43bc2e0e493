"""Every gRPC service the hub serves, in one table: registration, health, reflection and who
may call each method all come from it.

A method with no role here is refused to everyone but an admin (deny by default); the test
tests/hub/test_services.py fails when any RPC of a served service is missing from the table,
so a new RPC cannot silently become admin-only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.descriptor import FileDescriptor

from gpufleet.v1 import (
    agent_link_pb2,
    agent_link_pb2_grpc,
    assign_pb2,
    assign_pb2_grpc,
    envs_pb2,
    envs_pb2_grpc,
    gateway_pb2,
    gateway_pb2_grpc,
    hub_pb2,
    hub_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    trust_pb2,
    trust_pb2_grpc,
)
from hub.trust.roles import ANY_ENROLLED, Need, Role

Register = Callable[[Any, grpc.aio.Server], None]

HEALTH = "grpc.health.v1.Health"
REFLECTION = "grpc.reflection.v1alpha.ServerReflection"


@dataclass(frozen=True)
class Service:
    """One gpufleet service: `key` names its servicer in HubServer.start."""

    key: str
    file: FileDescriptor
    name: str
    register: Register
    roles: Mapping[str, Need]
    # Served by an --insecure hub (Enrollment needs the hub's CA).
    insecure: bool = True
    # Reported SERVING by the health service under its own name.
    health: bool = False

    @property
    def full_name(self) -> str:
        return str(self.file.services_by_name[self.name].full_name)

    @property
    def methods(self) -> list[str]:
        return [m.name for m in self.file.services_by_name[self.name].methods]


def _same(need: Need, *methods: str) -> dict[str, Need]:
    return dict.fromkeys(methods, need)


SERVICES: tuple[Service, ...] = (
    Service(
        "link", agent_link_pb2.DESCRIPTOR, "AgentLink",
        agent_link_pb2_grpc.add_AgentLinkServicer_to_server,  # type: ignore[no-untyped-call]
        {"Connect": Role.AGENT}, health=True,
    ),
    Service(
        "hub", hub_pb2.DESCRIPTOR, "Hub", hub_pb2_grpc.add_HubServicer_to_server,  # type: ignore[no-untyped-call]
        {
            **_same(Role.VIEWER, "ListNodes", "GetNode", "ListGpus", "ListConfigurations",
                    "ValidateConfiguration", "GetStatus", "ListOperations", "GetOperation",
                    "WatchOperation", "GetGpuUsage"),
            **_same(Role.OPERATOR, "Switch", "Drain", "Stop", "CancelOperation"),
        },
        health=True,
    ),
    Service(
        "assign", assign_pb2.DESCRIPTOR, "Assignments",
        assign_pb2_grpc.add_AssignmentsServicer_to_server,  # type: ignore[no-untyped-call]
        {**_same(Role.VIEWER, "Preview", "Show"),
         **_same(Role.OPERATOR, "Set", "Apply", "Rollback")},
    ),
    Service(
        "models", models_pb2.DESCRIPTOR, "Models",
        models_pb2_grpc.add_ModelsServicer_to_server,  # type: ignore[no-untyped-call]
        {**_same(Role.VIEWER, "ListModels", "GetModel", "ValidateModel", "ListRunning"),
         **_same(Role.OPERATOR, "SwitchModel", "StopModel", "ModelLogs", "SwitchBackend")},
    ),
    Service(
        "envs", envs_pb2.DESCRIPTOR, "Envs", envs_pb2_grpc.add_EnvsServicer_to_server,  # type: ignore[no-untyped-call]
        {**_same(Role.VIEWER, "ListEnvs", "ListWheels"),
         **_same(Role.OPERATOR, "BuildEnv", "RemoveEnv", "EnvLogs", "RemoveWheel")},
    ),
    Service(
        "wheels", agent_link_pb2.DESCRIPTOR, "WheelCache",
        agent_link_pb2_grpc.add_WheelCacheServicer_to_server,  # type: ignore[no-untyped-call]
        {**_same(Role.AGENT, "Download", "Upload")},
    ),
    Service(
        "gateway", gateway_pb2.DESCRIPTOR, "Gateway",
        gateway_pb2_grpc.add_GatewayServicer_to_server,  # type: ignore[no-untyped-call]
        _same(Role.GATEWAY, "WatchRoutes", "EnsureModel", "ReportActivity", "GpuStats"),
    ),
    Service(
        "keys", gateway_pb2.DESCRIPTOR, "ApiKeys",
        gateway_pb2_grpc.add_ApiKeysServicer_to_server,  # type: ignore[no-untyped-call]
        {**_same(Role.VIEWER, "ListKeys"), **_same(Role.ADMIN, "CreateKey", "RevokeKey")},
    ),
    Service(
        "registry", registry_pb2.DESCRIPTOR, "Registry",
        registry_pb2_grpc.add_RegistryServicer_to_server,  # type: ignore[no-untyped-call]
        {**_same(Role.VIEWER, "ListEntries", "GetEntry", "ListCaches"),
         **_same(Role.OPERATOR, "Pull", "Import", "RemoveEntry", "CacheModel", "UncacheModel")},
    ),
    Service(
        "registry_fetch", registry_pb2.DESCRIPTOR, "RegistryFetch",
        registry_pb2_grpc.add_RegistryFetchServicer_to_server,  # type: ignore[no-untyped-call]
        {"Download": Role.AGENT},
    ),
    Service(
        "enrollment", trust_pb2.DESCRIPTOR, "Enrollment",
        trust_pb2_grpc.add_EnrollmentServicer_to_server,  # type: ignore[no-untyped-call]
        {"Join": Role.ANONYMOUS}, insecure=False,
    ),
    Service(
        "trust", trust_pb2.DESCRIPTOR, "Trust", trust_pb2_grpc.add_TrustServicer_to_server,  # type: ignore[no-untyped-call]
        {
            **_same(ANY_ENROLLED, "Renew", "WhoAmI"),
            **_same(Role.ADMIN, "CreateToken", "ListTokens", "RemoveNode", "ListCredentials",
                    "RevokeCredential", "ListAudit"),
        },
    ),
)  # fmt: skip

# Served beside them by grpcio's own packages.
STANDARD: dict[str, Mapping[str, Need]] = {
    HEALTH: _same(Role.ANONYMOUS, "Check", "Watch"),
    REFLECTION: {"ServerReflectionInfo": Role.VIEWER},
}

REQUIRED: dict[str, Need] = {
    f"/{service}/{method}": need
    for service, table in [
        *((s.full_name, s.roles) for s in SERVICES),
        *STANDARD.items(),
    ]
    for method, need in table.items()
}


def required(method: str) -> Need:
    """The role a full method name needs; unknown methods need an admin."""
    return REQUIRED.get(method, Role.ADMIN)


def served(insecure: bool) -> list[Service]:
    return [s for s in SERVICES if s.insecure or not insecure]


def register(server: grpc.aio.Server, servicers: Mapping[str, Any], insecure: bool) -> list[str]:
    """Add each served service's servicer; the full names served, for reflection."""
    names = []
    for service in served(insecure):
        service.register(servicers[service.key], server)
        names.append(service.full_name)
    return names
