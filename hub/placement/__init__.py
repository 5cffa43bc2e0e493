"""Pure, deterministic placement of services on GPUs (the multi-GPU design's strategies)."""

from .model import (
    LATENCY_CLASSES,
    WARNING_KINDS,
    GpuSlot,
    Pin,
    Placement,
    Plan,
    ServiceDemand,
    Warning,
    speed_score,
)
from .strategies import STRATEGIES, plan

__all__ = [
    "LATENCY_CLASSES",
    "STRATEGIES",
    "WARNING_KINDS",
    "GpuSlot",
    "Pin",
    "Placement",
    "Plan",
    "ServiceDemand",
    "Warning",
    "plan",
    "speed_score",
]
