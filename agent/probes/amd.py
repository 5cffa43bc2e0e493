"""The AMD probe: amdgpu's sysfs files, no ROCm library needed.

Under ROOT/class/drm/cardN/device (vendor 0x1002): mem_info_vram_total / _used (bytes),
gpu_busy_percent, unique_id, product_name, uevent (PCI_SLOT_NAME), hwmon/hwmon*/temp1_input
(millidegrees C), power1_average or power1_input and power1_cap (microwatts). The gfx target
comes from the KFD topology node whose drm_render_minor matches the card's renderD minor.
ROOT is a parameter so tests can point it at a fixture tree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from agent.probes.base import GpuInfo, ProbeResult

AMD_VENDOR = "0x1002"
CARD = re.compile(r"^card(\d+)$")
MIB = 1024 * 1024
# PCI device ids whose sysfs has no product_name (it comes from the board's FRU EEPROM).
KNOWN_DEVICES = {
    "0x66a0": "AMD Instinct MI50/MI60",
    "0x66a1": "AMD Instinct MI50 32GB",
    "0x738c": "AMD Instinct MI100",
    "0x740c": "AMD Instinct MI250X/MI250",
    "0x74a1": "AMD Instinct MI300X",
    "0x744c": "AMD Radeon RX 7900 XTX",
}


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _number(path: Path) -> int | None:
    text = _read(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def gfx_name(version: int) -> str:
    """KFD's gfx_target_version 90006 -> 'gfx906'; 110000 -> 'gfx1100'."""
    major, minor, stepping = version // 10000, version // 100 % 100, version % 100
    return f"gfx{major}{minor}{stepping:x}"


@dataclass
class AmdProbe:
    root: Path = Path("/sys")
    name: str = field(default="amd", init=False)

    def cards(self) -> list[Path]:
        drm = self.root / "class" / "drm"
        if not drm.is_dir():
            return []
        found = []
        for entry in drm.iterdir():
            match = CARD.match(entry.name)
            if match and _read(entry / "device" / "vendor") == AMD_VENDOR:
                found.append((int(match.group(1)), entry / "device"))
        return [device for _, device in sorted(found)]

    def inventory(self) -> ProbeResult:
        cards = self.cards()
        if not cards:
            return ProbeResult(self.name, error=f"no AMD GPU under {self.root}/class/drm")
        targets = self._gfx_targets()
        driver = _read(self.root / "module" / "amdgpu" / "version") or ""
        return ProbeResult(
            self.name, tuple(self._gpu(i, d, targets, driver) for i, d in enumerate(cards))
        )

    def _gfx_targets(self) -> dict[int, str]:
        """renderD minor -> gfx target, from the KFD topology."""
        nodes = self.root / "class" / "kfd" / "kfd" / "topology" / "nodes"
        targets: dict[int, str] = {}
        for properties in sorted(nodes.glob("*/properties")):
            values = dict(
                line.split(maxsplit=1) for line in (_read(properties) or "").splitlines()
                if " " in line
            )  # fmt: skip
            minor, version = values.get("drm_render_minor"), values.get("gfx_target_version")
            if minor and version and version.isdigit() and int(version) > 0:
                targets[int(minor)] = gfx_name(int(version))
        return targets

    def _gpu(self, index: int, device: Path, targets: dict[int, str], driver: str) -> GpuInfo:
        total = _number(device / "mem_info_vram_total") or 0
        used = _number(device / "mem_info_vram_used") or 0
        hwmon = next(iter(sorted((device / "hwmon").glob("hwmon*"))), None)
        temperature = _number(hwmon / "temp1_input") if hwmon else None
        power = None
        if hwmon:
            power = _number(hwmon / "power1_average") or _number(hwmon / "power1_input")
        cap = _number(hwmon / "power1_cap") if hwmon else None
        uevent = dict(
            line.split("=", 1) for line in (_read(device / "uevent") or "").splitlines()
            if "=" in line
        )  # fmt: skip
        render = next(iter(sorted((device / "drm").glob("renderD*"))), None)
        gfx = targets.get(int(render.name[len("renderD") :]), "") if render else ""
        pci_id = _read(device / "device") or ""
        unique = _read(device / "unique_id")
        bus_id = uevent.get("PCI_SLOT_NAME", "")
        return GpuInfo(
            index=index,
            uuid=f"GPU-{unique}" if unique else bus_id,
            name=_read(device / "product_name") or KNOWN_DEVICES.get(pci_id, f"AMD GPU {pci_id}"),
            vendor="amd",
            memory_total_mb=total // MIB,
            memory_used_mb=used // MIB,
            memory_free_mb=(total - used) // MIB if total else None,
            utilization_percent=_number(device / "gpu_busy_percent"),
            temperature_c=temperature / 1000 if temperature is not None else None,
            power_draw_w=power / 1e6 if power else None,
            power_limit_w=cap / 1e6 if cap else None,
            gfx_target=gfx,
            pci_bus_id=bus_id,
            driver_version=driver,
        )
