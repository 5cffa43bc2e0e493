"""Domain types of GPU placement: what a cluster offers, what services need, and the plan.

Units: ``vram_gb`` values are GiB, ``memory_total_mb`` is MiB (1 GiB = 1024 MiB); the messages
write GiB as "GB", the unit of a configuration's ``vram_gb`` (an 81559 MiB H100 holds 79.6 GB
here). Every type is a frozen dataclass, so plans compare by value and can be used as test
oracles.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB_PER_GIB = 1024
LATENCY_CLASSES = ("critical", "normal", "background")
WARNING_KINDS = (
    "budget_over_capacity",
    "combined_over_capacity",
    "large_model_small_gpu",
    "auto_adjusted",
    "gpu_lost_moved",
    "unplaced",
    "over_committed",
    "foreign_vram",
)


def speed_score(
    name: str,
    compute_capability: str | None,
    memory_total_mb: int,
    label_override: float | None = None,
) -> float:
    """A relative "fastest GPU" score; higher is faster.

    Rule: a node label override wins and is used as-is (so labels should be on the same scale,
    e.g. ``9`` to rank a GPU above every compute capability 8.x card). Otherwise the score is the
    compute capability as a number (``"8.6"`` -> 8.6; missing or unparsable -> 0) plus the memory
    in GiB / 1000, so a higher compute capability always wins and larger memory only breaks ties
    between equal capabilities (cards up to 999 GiB). ``name`` is accepted for future per-model
    tables and does not change the score today.
    """
    del name
    if label_override is not None:
        return float(label_override)
    capability = 0.0
    if compute_capability:
        major, _, minor = compute_capability.strip().partition(".")
        if major.isdigit() and (minor.isdigit() or not minor):
            capability = int(major) + (int(minor) / 10 ** len(minor) if minor else 0.0)
    memory_gib = min(memory_total_mb / MIB_PER_GIB, 999.0)
    return round(capability + memory_gib / 1000, 6)


@dataclass(frozen=True)
class GpuSlot:
    """``foreign_mb``: VRAM held by processes gpufleet did not start; placement uses only
    ``memory_total_mb - foreign_mb`` of the GPU (its usable size)."""

    node: str
    index: int
    name: str
    memory_total_mb: int
    speed: float = 1.0
    lost: bool = False
    foreign_mb: int = 0

    @property
    def usable_mb(self) -> int:
        return max(self.memory_total_mb - max(self.foreign_mb, 0), 0)

    @property
    def key(self) -> tuple[str, int]:
        return (self.node, self.index)


@dataclass(frozen=True)
class ServiceDemand:
    """``vram_gb`` per GPU; ``gpu_count`` > 1 is tensor parallel (all GPUs on one node).

    ``min_gb`` set means the service has an adjustable VRAM budget that may shrink to ``min_gb``.
    """

    name: str
    vram_gb: float
    gpu_count: int = 1
    latency_class: str = "normal"
    isolation: bool = False
    min_gb: float | None = None

    @property
    def adjustable(self) -> bool:
        return self.min_gb is not None


@dataclass(frozen=True)
class Pin:
    service: str
    node: str
    gpus: tuple[int, ...]
    vram_budget_gb: float | None = None


@dataclass(frozen=True)
class Placement:
    """``vram_gb`` is reserved on each GPU; ``budget_gb`` is the VRAM_BUDGET_GB to set, if any."""

    service: str
    node: str
    gpus: tuple[int, ...]
    vram_gb: float
    budget_gb: float | None


@dataclass(frozen=True)
class Warning:
    kind: str
    message: str
    service: str = ""
    node: str = ""
    gpu: int | None = None


@dataclass(frozen=True)
class Plan:
    placements: tuple[Placement, ...]
    unplaced: tuple[tuple[str, str], ...]
    warnings: tuple[Warning, ...]
    # Only the ``optimal`` strategy sets this: whether it proved its plan optimal.
    proved_optimal: bool | None = None

    def used_gb(self) -> dict[tuple[str, int], float]:
        """VRAM placed on each GPU that holds something, keyed by (node, index)."""
        used: dict[tuple[str, int], float] = {}
        for placement in self.placements:
            for index in placement.gpus:
                key = (placement.node, index)
                used[key] = used.get(key, 0.0) + placement.vram_gb
        return used

    def placement(self, service: str) -> Placement | None:
        return next((p for p in self.placements if p.service == service), None)

    def kinds(self, service: str = "") -> list[str]:
        return [w.kind for w in self.warnings if not service or w.service == service]
