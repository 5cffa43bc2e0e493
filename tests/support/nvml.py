"""A simulated NVML for tests: build tests/support/fake_nvml/fake_nvml.c into a
libnvidia-ml.so.1 and describe the simulated host in the text file it reads.

A process started with `nvml_env(lib_dir, host_file)` in its environment loads the fake
library through the real pynvml, and sees every later `write_host` to that file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

SOURCE = Path(__file__).resolve().parent / "fake_nvml" / "fake_nvml.c"
LIBRARY_NAME = "libnvidia-ml.so.1"
MIB = 1024 * 1024
ERROR_FIELDS = frozenset(
    {
        "name",
        "uuid",
        "memory",
        "utilization",
        "temperature",
        "power_usage",
        "power_limit",
        "compute_capability",
        "pci",
        "processes",
    }
)


@dataclass
class FakeGpu:
    name: str
    uuid: str
    memory_total_mb: int
    memory_used_mb: int
    compute_capability: tuple[int, int] = (8, 6)
    utilization_gpu: int = 0
    utilization_memory: int = 0
    temperature_c: int = 40
    power_mw: int = 50000
    power_limit_mw: int = 230000
    pci_bus_id: str = "00000000:01:00.0"
    processes: list[tuple[int, int]] = field(default_factory=list)
    """(pid, used MiB) of each compute process."""
    lost: bool = False
    errors: dict[str, str] = field(default_factory=dict)
    """Field (one of ERROR_FIELDS) -> NVML error name (e.g. "NOT_SUPPORTED") its query returns."""


@dataclass
class FakeHost:
    gpus: list[FakeGpu]
    driver_version: str = "550.54.15"
    init_error: str | None = None
    """NVML error name (e.g. "DRIVER_NOT_LOADED") that nvmlInit returns."""


def render_host(host: FakeHost) -> str:
    """The host file's text."""
    lines = [f"driver_version={host.driver_version}", f"device_count={len(host.gpus)}"]
    if host.init_error is not None:
        lines.append(f"init_error={host.init_error}")
    for i, gpu in enumerate(host.gpus):
        values: dict[str, object] = {
            "name": gpu.name,
            "uuid": gpu.uuid,
            "memory_total": gpu.memory_total_mb * MIB,
            "memory_used": gpu.memory_used_mb * MIB,
            "utilization_gpu": gpu.utilization_gpu,
            "utilization_memory": gpu.utilization_memory,
            "temperature": gpu.temperature_c,
            "power_usage": gpu.power_mw,
            "power_limit": gpu.power_limit_mw,
            "cc_major": gpu.compute_capability[0],
            "cc_minor": gpu.compute_capability[1],
            "pci_bus_id": gpu.pci_bus_id,
            "process_count": len(gpu.processes),
            "lost": int(gpu.lost),
        }
        for p, (pid, used_mb) in enumerate(gpu.processes):
            values[f"process.{p}.pid"] = pid
            values[f"process.{p}.used_memory"] = used_mb * MIB
        for name, error in gpu.errors.items():
            if name not in ERROR_FIELDS:
                raise ValueError(f"gpu {i}: no field {name!r}; fields: {sorted(ERROR_FIELDS)}")
            values[f"error.{name}"] = error
        for key, value in values.items():
            text = str(value)
            if "\n" in text or "#" in text:
                raise ValueError(f"gpu {i} {key}: {text!r} cannot go in the host file")
            lines.append(f"device.{i}.{key}={text}")
    return "\n".join(lines) + "\n"


def write_host(path: Path, host: FakeHost) -> None:
    """Write the host file atomically: a reader sees the old file or the new, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(render_host(host))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class FakeNvmlUnavailable(Exception):
    """The fake library cannot be built here."""


def build_library(build_dir: Path) -> Path:
    """Compile fake_nvml.c into build_dir/libnvidia-ml.so.1 (unless that build is current) and
    return the directory to put on LD_LIBRARY_PATH."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise FakeNvmlUnavailable("gcc not found: install Debian's package gcc")
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source).hexdigest()
    library = build_dir / LIBRARY_NAME
    stamp = build_dir / f"{LIBRARY_NAME}.sha256"
    if library.exists() and stamp.exists() and stamp.read_text() == digest:
        return build_dir
    build_dir.mkdir(parents=True, exist_ok=True)
    partial = build_dir / f".{LIBRARY_NAME}.{os.getpid()}.tmp"
    argv = [gcc, "-std=c11", "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror"]
    result = subprocess.run(
        [*argv, "-o", str(partial), str(SOURCE)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise FakeNvmlUnavailable(
            f"compiling {SOURCE} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
        )
    os.replace(partial, library)
    stamp.write_text(digest)
    return build_dir


def nvml_env(lib_dir: Path, host_file: Path) -> dict[str, str]:
    """Environment additions for a process that should load the fake NVML."""
    existing = os.environ.get("LD_LIBRARY_PATH")
    path = f"{lib_dir}{os.pathsep}{existing}" if existing else str(lib_dir)
    return {"LD_LIBRARY_PATH": path, "GPUFLEET_FAKE_NVML": str(host_file)}
