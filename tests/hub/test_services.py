"""The services table drives registration and roles: no RPC may be left without a role."""

from __future__ import annotations

from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from hub import services
from hub.trust.roles import Role


def descriptor_methods() -> dict[str, list[str]]:
    found = {s.full_name: s.methods for s in services.SERVICES}
    for module in (health_pb2, reflection_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            found[service.full_name] = [m.name for m in service.methods]
    return found


def test_every_rpc_of_every_served_service_has_a_role() -> None:
    missing = [
        f"/{service}/{method}"
        for service, methods in descriptor_methods().items()
        for method in methods
        if f"/{service}/{method}" not in services.REQUIRED
    ]
    assert missing == [], f"RPCs without a role in hub/services.py: {missing}"


def test_no_role_names_a_method_that_does_not_exist() -> None:
    known = {f"/{s}/{m}" for s, methods in descriptor_methods().items() for m in methods}
    assert sorted(set(services.REQUIRED) - known) == []


def test_unknown_methods_need_an_admin() -> None:
    assert services.required("/gpufleet.v1.Hub/NoSuchMethod") == Role.ADMIN
    assert services.required("/gpufleet.v1.Hub/CancelOperation") == Role.OPERATOR
    assert services.required("/gpufleet.v1.Hub/ListNodes") == Role.VIEWER


def test_an_insecure_hub_serves_everything_but_enrollment() -> None:
    names = [s.name for s in services.served(insecure=True)]
    assert "Enrollment" not in names
    assert {"AgentLink", "Hub", "Assignments", "Trust"} <= set(names)
    assert [s.name for s in services.served(insecure=False)] == [s.name for s in services.SERVICES]
