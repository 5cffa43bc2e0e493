"""Roles and what each may do. Which method needs which role: hub/services.py (deny by
default: a method missing there needs an admin)."""

from __future__ import annotations

from enum import IntEnum

from gpufleet.v1 import trust_pb2


class Role(IntEnum):
    """Operator roles are ordered (admin can do what operator can); agent and gateway stand
    apart: each may call only what names it."""

    ANONYMOUS = 0
    AGENT = 1
    VIEWER = 2
    OPERATOR = 3
    ADMIN = 4
    GATEWAY = 5

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
    Role.GATEWAY: trust_pb2.ROLE_GATEWAY,
}
_FROM_PROTO = {int(value): role for role, value in _TO_PROTO.items()}


OPERATOR_ROLES = (Role.VIEWER, Role.OPERATOR, Role.ADMIN)
ANY_ENROLLED = "enrolled"  # any identity with a valid certificate

Need = Role | str  # a role, or ANY_ENROLLED


def allowed(role: Role, need: Role | str) -> bool:
    if need == ANY_ENROLLED:
        return role != Role.ANONYMOUS
    assert isinstance(need, Role)
    if need in (Role.ANONYMOUS,):
        return True
    if need in (Role.AGENT, Role.GATEWAY):
        return role == need
    return role in OPERATOR_ROLES and role >= need


def audited(method: str, need: Need) -> bool:
    """Calls that change something, enrollments and agent streams are recorded whatever their
    result; reads only when refused."""
    return need in (Role.OPERATOR, Role.ADMIN) or method in (
        "/gpufleet.v1.Enrollment/Join",
        "/gpufleet.v1.AgentLink/Connect",
        "/gpufleet.v1.Trust/Renew",
    )


def describe(need: Role | str) -> str:
    if need == ANY_ENROLLED:
        return "an enrolled identity"
    assert isinstance(need, Role)
    return {Role.AGENT: "an enrolled agent", Role.GATEWAY: "an enrolled gateway"}.get(
        need, f"the {need.label} role"
    )
