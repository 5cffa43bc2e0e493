"""Pure functions of a build: CMake flags per backend, GPU targets, toolkit versions as the
compatibility key names them, and compile progress from ninja's "[n/m]" lines."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# ggml's current option names. The old ones (LLAMA_CUBLAS, GGML_HIPBLAS, LLAMA_VULKAN) are
# ignored by llama-cpp-python 0.3's llama.cpp and silently build a CPU-only library.
# Never tuned to this host's CPU (-march=native), whatever the backend: the wheel goes to the
# cluster cache and must run on every node of the same architecture (its CPU code too).
PORTABLE = "-DGGML_NATIVE=OFF"
BACKEND_FLAGS = {
    "cpu": (PORTABLE,),
    "cuda": (PORTABLE, "-DGGML_CUDA=on"),
    "vulkan": (PORTABLE, "-DGGML_VULKAN=on"),
    "rocm": (PORTABLE, "-DGGML_HIP=on"),
}


def cuda_arch(compute_capability: str) -> str:
    """NVML's "8.6" -> CMake's "86"; "" for what is not MAJOR.MINOR."""
    major, sep, minor = compute_capability.strip().partition(".")
    if not sep or not major.isdigit() or not minor.isdigit():
        return ""
    return f"{int(major)}{int(minor)}"


def targets(node: Iterable[str], extra: Iterable[str]) -> tuple[str, ...]:
    """The node's own targets and the extra ones asked for, each once, sorted."""
    return tuple(sorted({t for t in (*node, *extra) if t}))


def cmake_args(backend: str, found: Iterable[str] = ()) -> str:
    """CMAKE_ARGS for pip's build of llama-cpp-python."""
    flags = list(BACKEND_FLAGS[backend])
    listed = ";".join(found)
    if backend == "cuda":
        flags.append(f"-DCMAKE_CUDA_ARCHITECTURES={listed}")
    elif backend == "rocm":
        flags += [f"-DAMDGPU_TARGETS={listed}", f"-DGPU_TARGETS={listed}"]
    return " ".join(flags)


def nvcc_version(output: str) -> str:
    """`nvcc --version`: "... release 12.4, V12.4.131" -> "12.4"."""
    found = re.search(r"release (\d+\.\d+)", output)
    return found.group(1) if found else ""


def glslc_version(output: str) -> str:
    """`glslc --version`: "shaderc 2023.2-1 ..." -> "2023.2"."""
    found = re.search(r"shaderc v?(\d+\.\d+)", output)
    return found.group(1) if found else ""


def hipcc_version(output: str) -> str:
    """`hipcc --version`: "HIP version: 6.1.40091-a8dbc0c19" -> "6.1"."""
    found = re.search(r"HIP version: (\d+\.\d+)", output)
    return found.group(1) if found else ""


def vulkan_header_version(header: str) -> int:
    """vulkan_core.h's "#define VK_HEADER_VERSION 239" -> 239; 0 when absent."""
    found = re.search(r"^#define VK_HEADER_VERSION (\d+)", header, re.MULTILINE)
    return int(found.group(1)) if found else 0


def cmake_version(output: str) -> tuple[int, ...]:
    """`cmake --version`: "cmake version 3.25.1" -> (3, 25, 1); () when unreadable."""
    found = re.search(r"cmake version (\d+)\.(\d+)(?:\.(\d+))?", output)
    return tuple(int(p) for p in found.groups() if p is not None) if found else ()


@dataclass(frozen=True)
class Step:
    done: int
    total: int

    @property
    def percent(self) -> float:
        return 100.0 * self.done / self.total if self.total else 0.0

    def describe(self) -> str:
        return f"compile {self.done}/{self.total} ({self.percent:.0f}%)"


_NINJA = re.compile(r"^\s*\[(\d+)/(\d+)\]\s")


def ninja_step(line: str) -> Step | None:
    """Ninja's "[37/212] Building CXX object ..." -> Step(37, 212); None for other lines."""
    found = _NINJA.match(line)
    if found is None:
        return None
    done, total = int(found.group(1)), int(found.group(2))
    return Step(done, total) if total > 0 and done <= total else None
