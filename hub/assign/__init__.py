"""GPU assignments through the hub: the Assignments service and its procedure."""

from hub.assign.service import AssignmentService

__all__ = ["AssignmentService"]
