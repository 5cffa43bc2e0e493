"""The verification gate: before an environment can be used, a subprocess of ITS python reports
llama_supports_gpu_offload() and llama_print_system_info(), loads a tiny GGUF (tinygguf.py) with
every layer offloaded (n_gpu_layers=-1, verbose) and generates a token. llama.cpp's log lines
tell where the layers went ("offloaded 3/3 layers to GPU", "using device Vulkan0 (...)").

A GPU backend is ready only when offload is supported, every layer was offloaded and a device of
that backend was used; otherwise broken, with the reason. A CPU environment is ready when the
model loads and answers.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from agent.envs.commands import kill_session
from agent.envs.record import BROKEN, READY
from agent.envs.tinygguf import write_tiny_gguf

MODEL_FILE = "verify.gguf"
TIMEOUT_S = 600.0
MARK = "GPUFLEET-VERIFY "
SCRIPT = f"""
import json, sys
import llama_cpp
found = {{"gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
         "system_info": llama_cpp.llama_print_system_info().decode(errors="replace").strip()}}
llm = llama_cpp.Llama(model_path=sys.argv[1], n_gpu_layers=-1, n_ctx=64, verbose=True)
out = llm("hello", max_tokens=1)
found["answered"] = len(out["choices"]) == 1
print({MARK!r} + json.dumps(found), flush=True)
"""
# ggml's device names per backend: CUDA0, Vulkan0, ROCm0 (HIP builds of ggml-cuda).
DEVICE_PREFIX = {"cuda": "CUDA", "vulkan": "Vulkan", "rocm": "ROCm"}
# What a GPU backend compiled in logs when it starts ("ggml_vulkan: No devices found.").
_BACKEND_LOG = {"cuda": "ggml_cuda", "vulkan": "ggml_vulkan", "rocm": "ggml_cuda"}
_OFFLOADED = re.compile(r"offloaded (\d+)/(\d+) layers to GPU")
# "using device Vulkan0 (llvmpipe (LLVM 15.0.6, 256 bits)) (unknown id) - 2048 MiB free": the
# description may hold one level of parentheses.
_DEVICE = re.compile(r"using device (\S+) \(((?:[^()]|\([^()]*\))*)\)")
_ASSIGNED = re.compile(r"assigned to device (\S+?),")


@dataclass(frozen=True)
class Verified:
    state: str  # ready | broken
    message: str
    gpu_offload: bool = False
    devices: tuple[str, ...] = ()
    system_info: str = ""
    offloaded: tuple[int, int] | None = None  # (layers offloaded, layers)


def judge(backend: str, code: int, stdout: str, log: str) -> Verified:
    """What the verification subprocess showed (its exit status, stdout, llama.cpp's log)."""
    report = next((line[len(MARK):] for line in stdout.splitlines() if line.startswith(MARK)),
                  None)  # fmt: skip
    tail = " | ".join(line for line in log.strip().splitlines()[-3:])
    if code != 0 or report is None:
        return Verified(BROKEN, f"the verification failed (exit status {code}): {tail[-300:]}")
    found = json.loads(report)
    offload, info = bool(found.get("gpu_offload")), str(found.get("system_info", ""))
    devices = tuple(dict.fromkeys(f"{m.group(1)}: {m.group(2)}" for m in _DEVICE.finditer(log)))
    used = set(_ASSIGNED.findall(log)) | {d.partition(":")[0] for d in devices}
    layers = _OFFLOADED.search(log)
    offloaded = (int(layers.group(1)), int(layers.group(2))) if layers else None

    def verified(state: str, message: str) -> Verified:
        return Verified(state, message, offload, devices, info, offloaded)

    if not found.get("answered"):
        return verified(BROKEN, "the test model loaded but did not answer")
    prefix = DEVICE_PREFIX.get(backend)
    if prefix is None:
        return verified(READY, "verified: the test model loads and answers on the CPU")
    if not offload and _BACKEND_LOG[backend] in log:
        return verified(BROKEN, f"llama.cpp's {backend} backend found no device it would use"
                        f"{_vulkan_hint(backend)}")  # fmt: skip
    if not offload:
        return verified(BROKEN, f"llama_supports_gpu_offload() is false: this {backend} build "
                        "has no GPU backend (built CPU-only)")  # fmt: skip
    if offloaded is None or offloaded[0] == 0:
        return verified(BROKEN, "no layer was offloaded to a GPU: llama.cpp found no "
                        f"{backend} device it would use{_vulkan_hint(backend)}")  # fmt: skip
    if offloaded[0] < offloaded[1]:
        return verified(BROKEN, f"only {offloaded[0]}/{offloaded[1]} layers were offloaded")
    ours = sorted(d for d in used if d.startswith(prefix))
    if not ours:
        return verified(BROKEN, f"the layers went to {', '.join(sorted(used)) or 'no device'}, "
                        f"not to a {backend} device")  # fmt: skip
    return verified(READY, f"verified: {offloaded[0]}/{offloaded[1]} layers offloaded to "
                    f"{', '.join(devices) or ', '.join(ours)}")  # fmt: skip


def _vulkan_hint(backend: str) -> str:
    if backend != "vulkan":
        return ""
    return ("; a CPU Vulkan device (Mesa's llvmpipe) is used only when named: set "
            "GGML_VK_VISIBLE_DEVICES=0 in the agent's environment")  # fmt: skip


async def verify(python: Path, backend: str, directory: Path, env: Mapping[str, str],
                 timeout_s: float = TIMEOUT_S) -> tuple[Verified, str]:  # fmt: skip
    """Run the gate with the environment's `python`; what it concluded and llama.cpp's log."""
    model = write_tiny_gguf(directory / MODEL_FILE)
    child = await asyncio.create_subprocess_exec(
        str(python), "-I", "-c", SCRIPT, str(model), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL, env=dict(env),
        start_new_session=True,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(child.communicate(), timeout_s)
    except TimeoutError:
        kill_session(child.pid)
        await child.wait()
        return Verified(BROKEN, f"the verification did not finish within {timeout_s:.0f} s"), ""
    except BaseException:
        kill_session(child.pid)
        raise
    log = err.decode(errors="replace")
    return judge(backend, child.returncode or 0, out.decode(errors="replace"), log), log
