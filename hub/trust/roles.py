"""Who may call what. Deny by default: a method missing here needs an admin."""

from __future__ import annotations

from enum import IntEnum

from gpufleet.v1 import trust_pb2


class Role(IntEnum):
    """Operator roles are ordered (admin can do what operator can); agent stands apart."""

    ANONYMOUS = 0
    AGENT = 1
    VIEWER = 2
    OPERATOR = 3
    ADMIN = 4

    @classmethod
    def parse(cls, name: str) -> Role:
        return cls[name.upper()]

    @property
    def label(self) -> str:
        return self.name.lower()

    def to_proto(self) -> trust_pb2.Role:
        return _TO_PROTO[self]

    @classmethod
    def from_proto(cls, value: int) -> Role:
        return _FROM_PROTO.get(value, cls.ANONYMOUS)


_TO_PROTO = {
    Role.ANONYMOUS: trust_pb2.ROLE_UNSPECIFIED,
    Role.AGENT: trust_pb2.ROLE_AGENT,
    Role.VIEWER: trust_pb2.ROLE_VIEWER,
    Role.OPERATOR: trust_pb2.ROLE_OPERATOR,
    Role.ADMIN: trust_pb2.ROLE_ADMIN,
}
_FROM_PROTO = {int(value): role for role, value in _TO_PROTO.items()}


OPERATOR_ROLES = (Role.VIEWER, Role.OPERATOR, Role.ADMIN)
ANY_ENROLLED = "enrolled"  # any identity with a valid certificate

_HUB_READ = [
    "ListNodes",
    "GetNode",
    "ListGpus",
    "ListConfigurations",
    "ValidateConfiguration",
    "GetStatus",
    "ListOperations",
    "GetOperation",
    "WatchOperation",
]
_HUB_WRITE = ["Switch", "Drain", "Stop"]
_TRUST_ADMIN = [
    "CreateToken",
    "ListTokens",
    "RemoveNode",
    "ListCredentials",
    "RevokeCredential",
    "ListAudit",
]

REQUIRED: dict[str, Role | str] = {
    "/gpufleet.v1.AgentLink/Connect": Role.AGENT,
    "/gpufleet.v1.Enrollment/Join": Role.ANONYMOUS,
    "/grpc.health.v1.Health/Check": Role.ANONYMOUS,
    "/grpc.health.v1.Health/Watch": Role.ANONYMOUS,
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": Role.VIEWER,
    "/gpufleet.v1.Trust/Renew": ANY_ENROLLED,
    "/gpufleet.v1.Trust/WhoAmI": ANY_ENROLLED,
    **{f"/gpufleet.v1.Hub/{m}": Role.VIEWER for m in _HUB_READ},
    **{f"/gpufleet.v1.Hub/{m}": Role.OPERATOR for m in _HUB_WRITE},
    **{f"/gpufleet.v1.Assignments/{m}": Role.VIEWER for m in ("Preview", "Show")},
    **{f"/gpufleet.v1.Assignments/{m}": Role.OPERATOR for m in ("Set", "Apply", "Rollback")},
    **{f"/gpufleet.v1.Trust/{m}": Role.ADMIN for m in _TRUST_ADMIN},
}


def required(method: str) -> Role | str:
    return REQUIRED.get(method, Role.ADMIN)


def allowed(role: Role, need: Role | str) -> bool:
    if need == ANY_ENROLLED:
        return role != Role.ANONYMOUS
    assert isinstance(need, Role)
    if need in (Role.ANONYMOUS,):
        return True
    if need == Role.AGENT:
        return role == Role.AGENT
    return role in OPERATOR_ROLES and role >= need


def audited(method: str) -> bool:
    """Calls that change something, enrollments and agent streams are recorded whatever their
    result; reads only when refused."""
    need = required(method)
    return need in (Role.OPERATOR, Role.ADMIN) or method in (
        "/gpufleet.v1.Enrollment/Join",
        "/gpufleet.v1.AgentLink/Connect",
        "/gpufleet.v1.Trust/Renew",
    )


def describe(need: Role | str) -> str:
    if need == ANY_ENROLLED:
        return "an enrolled identity"
    assert isinstance(need, Role)
    return {Role.AGENT: "an enrolled agent"}.get(need, f"the {need.label} role")
