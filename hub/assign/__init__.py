"""GPU assignments through the hub: the Assignments service and its procedure."""

from __future__ import annotations

from typing import Any

import grpc

from gpufleet.v1 import assign_pb2, assign_pb2_grpc
from hub.assign.service import AssignmentService

SERVICE_NAME: str = assign_pb2.DESCRIPTOR.services_by_name["Assignments"].full_name


def add_to_server(server: grpc.aio.Server, hub: Any) -> AssignmentService:
    """Serve Assignments for a started HubServer (its registry, database, manager, config)."""
    service = AssignmentService(
        hub.registry, hub.db, hub.manager, hub.config.configs_dir, hub.config.state_dir
    )
    assign_pb2_grpc.add_AssignmentsServicer_to_server(service, server)  # type: ignore[no-untyped-call]
    return service


__all__ = ["SERVICE_NAME", "AssignmentService", "add_to_server"]
