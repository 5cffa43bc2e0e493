"""Wall time and quality of each placement strategy on small and large clusters.

    python -m bench.placement

Instances: the seed host (A5500 + A400, five services); 64 GPUs / 200 services; 8,000 GPUs /
20,000 services. The random ones are seeded: 8-GPU nodes of one model each (24, 48 or 80 GB),
services of 0.5-70 GB, one in ten tensor parallel over 2, 4 or 8 GPUs, a quarter adjustable.
Goal: the 8,000 GPU instance in under 2 s per strategy.
"""

from __future__ import annotations

import random
import statistics
import time

from hub.placement import GpuSlot, ServiceDemand, plan, speed_score

STRATEGIES = ("vram_based", "latency_optimized", "isolation_first", "balanced")


def seed_host() -> tuple[list[GpuSlot], list[ServiceDemand]]:
    gpus = [
        GpuSlot("gpu-a", 0, "NVIDIA RTX A5500", 24564, speed_score("A5500", "8.6", 24564)),
        GpuSlot("gpu-a", 1, "NVIDIA RTX A400", 4094, speed_score("A400", "8.6", 4094)),
    ]
    services = [
        ServiceDemand("ai-llm", 21.7, latency_class="critical", isolation=True),
        ServiceDemand("ai-yolo26", 0.65, latency_class="critical"),
        ServiceDemand("ai-florence", 1.5),
        ServiceDemand("ai-clip", 1.2),
        ServiceDemand("ai-enrichment", 6.8, min_gb=3.5),
    ]
    return gpus, services


def cluster(n_gpus: int, n_services: int, seed: int) -> tuple[list[GpuSlot], list[ServiceDemand]]:
    rnd = random.Random(seed)
    models = [("L4", "8.9", 24), ("A6000", "8.6", 48), ("H100", "9.0", 80)]
    gpus = []
    for n in range(n_gpus // 8):
        name, cc, gb = rnd.choice(models)
        for i in range(8):
            mb = gb * 1024
            gpus.append(GpuSlot(f"node-{n:04d}", i, name, mb, speed_score(name, cc, mb)))
    services = []
    for k in range(n_services):
        vram = round(min(70.0, max(0.5, rnd.lognormvariate(1.5, 1.0))), 2)
        count = rnd.choice([2, 4, 8]) if rnd.random() < 0.1 else 1
        if count > 1:
            vram = round(min(vram, 60.0), 2)
        services.append(
            ServiceDemand(
                f"svc-{k:05d}",
                vram,
                count,
                rnd.choice(["critical", "normal", "normal", "background"]),
                rnd.random() < 0.05,
                round(vram / 2, 2) if rnd.random() < 0.25 else None,
            )
        )
    return gpus, services


def main() -> None:
    instances = {
        "seed host (2 GPUs / 5)": seed_host(),
        "64 GPUs / 200": cluster(64, 200, 1),
        "8,000 GPUs / 20,000": cluster(8000, 20000, 2),
    }
    head = (
        f"{'instance':<24} {'strategy':<18} {'time s':>8} {'placed':>13} "
        f"{'max util':>9} {'util var':>9}"
    )
    print(head)
    print("-" * len(head))
    for label, (gpus, services) in instances.items():
        for strategy in STRATEGIES:
            start = time.perf_counter()
            result = plan(strategy, gpus, services)
            elapsed = time.perf_counter() - start
            used = result.used_gb()
            util = [used.get(g.key, 0.0) / (g.memory_total_mb / 1024) for g in gpus]
            placed = f"{len(result.placements)}/{len(services)}"
            print(
                f"{label:<24} {strategy:<18} {elapsed:>8.3f} {placed:>13} "
                f"{max(util):>9.3f} {statistics.pvariance(util):>9.4f}"
            )


if __name__ == "__main__":
    main()
