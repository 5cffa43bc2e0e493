"""What a backend's build needs on this host, checked before anything is created: each missing
thing is one line naming the Debian package or setting that fixes it. The host is behind a
small interface (Host) so the logic is tested with injected answers; SystemHost asks the real
one.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from agent.envs import flags
from agent.probes import GpuInfo

GIB = 1024**3
# Free space under the state dir a build needs (source, build tree, venv, wheel), per backend.
DISK_GIB = {"cpu": 3, "vulkan": 4, "cuda": 10, "rocm": 10}
CMAKE_MIN = (3, 21)
NVCC_FALLBACK = "/usr/local/cuda/bin/nvcc"
HIPCC_FALLBACK = "/opt/rocm/bin/hipcc"
VULKAN_INCLUDE = "/usr/include"  # else $VULKAN_SDK/include, where CMake's FindVulkan looks
# llama-cpp-python 0.3.36's ggml-vulkan uses VK_EXT_layer_settings unguarded: Vulkan-Headers
# 1.3.272 or newer (Debian 12 has 1.3.239, Debian 13 1.4.309).
VULKAN_HEADERS_MIN = 272
SPIRV_HEADERS = ("/usr/share/cmake/SPIRV-Headers", "/usr/lib/cmake/SPIRV-Headers",
                 "/usr/local/share/cmake/SPIRV-Headers")  # fmt: skip
VISIBLE = "GGML_VK_VISIBLE_DEVICES"
VKPROBE = Path(__file__).with_name("vkprobe.py")
OUTPUT_TIMEOUT_S = 60.0


class Host(Protocol):
    def which(self, name: str) -> str | None: ...

    def exists(self, path: str) -> bool: ...

    def read(self, path: str) -> str:
        """A text file's contents; "" when it cannot be read."""
        ...

    def variable(self, name: str) -> str: ...

    def free_bytes(self, path: Path) -> int: ...

    async def output(self, argv: Sequence[str]) -> tuple[int, str]:
        """Exit status and stdout+stderr; (127, why) when it cannot run."""
        ...


class SystemHost:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)

    def which(self, name: str) -> str | None:
        return shutil.which(name, path=self.env.get("PATH", os.defpath))

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def read(self, path: str) -> str:
        try:
            return Path(path).read_text(errors="replace")
        except OSError:
            return ""

    def variable(self, name: str) -> str:
        return self.env.get(name, "")

    def free_bytes(self, path: Path) -> int:
        while not path.exists() and path != path.parent:
            path = path.parent
        return shutil.disk_usage(path).free

    async def output(self, argv: Sequence[str]) -> tuple[int, str]:
        try:
            child = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL, env=self.env, start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            return 127, f"{argv[0]}: {exc.strerror}"
        try:
            out, _ = await asyncio.wait_for(child.communicate(), OUTPUT_TIMEOUT_S)
        except TimeoutError:
            child.kill()
            await child.wait()
            return 124, f"{argv[0]} did not answer within {OUTPUT_TIMEOUT_S:.0f} s"
        return child.returncode or 0, out.decode(errors="replace")


@dataclass(frozen=True)
class Toolchain:
    """What preflight found: the compatibility key's toolkit, the GPU targets, and variables the
    build needs (CUDACXX where nvcc is not on PATH)."""

    backend: str
    toolkit: str = ""
    targets: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    devices: tuple[str, ...] = ()  # Vulkan: what the loader sees


@dataclass(frozen=True)
class Checked:
    toolchain: Toolchain
    problems: tuple[str, ...]


async def _common(host: Host, backend: str, state_dir: Path) -> list[str]:
    problems = []
    if host.which("gcc") is None and host.which("cc") is None:
        problems.append("no C compiler (gcc): install Debian's package gcc")
    if host.which("g++") is None and host.which("c++") is None:
        problems.append("no C++ compiler (g++): install Debian's package g++")
    cmake = host.which("cmake")
    if cmake is None:
        problems.append("no cmake: install Debian's package cmake (3.21 or newer)")
    else:
        found = flags.cmake_version((await host.output([cmake, "--version"]))[1])
        if found[:2] < CMAKE_MIN:
            shown = ".".join(map(str, found)) or "of unknown version"
            problems.append(f"cmake {shown} is too old: llama.cpp needs 3.21 or newer "
                            "(Debian 12's package cmake, or `pip install cmake`)")  # fmt: skip
    need = DISK_GIB[backend]
    free = host.free_bytes(state_dir)
    if free < need * GIB:
        problems.append(f"only {free / GIB:.1f} GiB free under {state_dir}: a {backend} "
                        f"build needs {need} GiB; free some space or use another "
                        "--state-dir")  # fmt: skip
    return problems


async def _cuda(host: Host, gpus: Sequence[GpuInfo], extra: Sequence[str]) -> Checked:
    problems = []
    nvcc = host.which("nvcc") or (NVCC_FALLBACK if host.exists(NVCC_FALLBACK) else None)
    version, env = "", {}
    if nvcc is None:
        problems.append("no CUDA compiler nvcc on PATH or in /usr/local/cuda/bin: install the "
                        "CUDA toolkit (Debian's package nvidia-cuda-toolkit, or NVIDIA's "
                        "cuda-toolkit)")  # fmt: skip
    else:
        version = flags.nvcc_version((await host.output([nvcc, "--version"]))[1])
        if not version:
            problems.append(f"{nvcc} --version does not say its release: reinstall the CUDA "
                            "toolkit")  # fmt: skip
        env["CUDACXX"] = nvcc
    own = [flags.cuda_arch(g.compute_capability) for g in gpus if g.vendor == "nvidia"]
    found = flags.targets(own, extra)
    if not found:
        problems.append("no NVIDIA GPU with a compute capability on this node: name the CUDA "
                        "architectures to build for as extra targets (e.g. 86)")  # fmt: skip
    return Checked(Toolchain("cuda", f"nvcc {version}" if version else "", found, env),
                   tuple(problems))  # fmt: skip


async def _vulkan(host: Host) -> Checked:
    problems = []
    glslc = host.which("glslc")
    version = ""
    if glslc is None:
        problems.append("no glslc (the Vulkan shader compiler) on PATH: install Debian's "
                        "package glslc")  # fmt: skip
    else:
        version = flags.glslc_version((await host.output([glslc, "--version"]))[1])
    sdk = host.variable("VULKAN_SDK")
    include = f"{sdk}/include" if sdk else VULKAN_INCLUDE
    if not host.exists(f"{include}/vulkan/vulkan.h"):
        where = "$VULKAN_SDK/include" if sdk else include
        problems.append(f"no Vulkan headers ({where}/vulkan/vulkan.h): install Debian's "
                        "package libvulkan-dev")  # fmt: skip
    else:
        found = flags.vulkan_header_version(host.read(f"{include}/vulkan/vulkan_core.h"))
        if found < VULKAN_HEADERS_MIN:
            problems.append(f"the Vulkan headers in {include} are too old (1.3.{found}): "
                            f"llama.cpp's Vulkan backend needs 1.3.{VULKAN_HEADERS_MIN} or "
                            "newer: install Debian 13's libvulkan-dev, or the LunarG Vulkan "
                            "SDK and set VULKAN_SDK")  # fmt: skip
    if not any(host.exists(path) for path in SPIRV_HEADERS):
        problems.append("no SPIR-V headers (SPIRV-HeadersConfig.cmake): install Debian's "
                        "package spirv-headers")  # fmt: skip
    code, out = await host.output([sys.executable, "-I", str(VKPROBE)])
    devices: tuple[str, ...] = ()
    try:
        seen = json.loads(out) if code == 0 else {}
    except ValueError:
        seen = {}
    if not seen:
        problems.append(f"cannot list Vulkan devices: {out.strip()[-200:] or f'exit {code}'}")
    elif not seen.get("loader"):
        problems.append("no Vulkan loader (libvulkan.so.1): install Debian's package libvulkan1")
    else:
        listed = seen.get("devices", [])
        devices = tuple(f"{d['name']} ({d['type']})" for d in listed)
        if not devices:
            error = f" ({seen['error']})" if seen.get("error") else ""
            problems.append(f"no Vulkan device{error}: install mesa-vulkan-drivers or a GPU "
                            "driver")  # fmt: skip
        elif all(d["type"] == "cpu" for d in listed) and not host.variable(VISIBLE):
            # ggml-vulkan skips CPU devices unless named: the build would verify broken.
            problems.append(f"the only Vulkan device is a CPU one ({listed[0]['name']}), which "
                            f"llama.cpp uses only when named: set {VISIBLE}=0 in the agent's "
                            "environment, or install a GPU driver")  # fmt: skip
    toolkit = f"glslc {version}" if version else ""
    return Checked(Toolchain("vulkan", toolkit, (), {}, devices), tuple(problems))


async def _rocm(host: Host, gpus: Sequence[GpuInfo], extra: Sequence[str]) -> Checked:
    problems = []
    hipcc = host.which("hipcc") or (HIPCC_FALLBACK if host.exists(HIPCC_FALLBACK) else None)
    version = ""
    if hipcc is None:
        problems.append("no hipcc on PATH or in /opt/rocm/bin: install ROCm's HIP SDK (AMD's "
                        "package rocm-hip-sdk, or Debian's hipcc)")  # fmt: skip
    else:
        version = flags.hipcc_version((await host.output([hipcc, "--version"]))[1])
    own = [g.gfx_target for g in gpus if g.vendor == "amd"]
    found = flags.targets(own, extra)
    if not found:
        problems.append("no AMD GPU with a gfx target on this node: name the targets to build "
                        "for as extra targets (e.g. gfx1100)")  # fmt: skip
    return Checked(Toolchain("rocm", f"hipcc {version}" if version else "", found),
                   tuple(problems))  # fmt: skip


async def check(host: Host, backend: str, state_dir: Path, gpus: Sequence[GpuInfo],
                extra: Sequence[str] = ()) -> Checked:  # fmt: skip
    """Every problem of a `backend` build on this host, and the toolchain found."""
    common = await _common(host, backend, state_dir)
    if backend == "cuda":
        found = await _cuda(host, gpus, extra)
    elif backend == "vulkan":
        found = await _vulkan(host)
    elif backend == "rocm":
        found = await _rocm(host, gpus, extra)
    else:
        found = Checked(Toolchain("cpu"), ())
    return Checked(found.toolchain, (*common, *found.problems))
