"""The simulated NVML (tests/support/fake_nvml) as the real pynvml sees it, in a subprocess
started with LD_LIBRARY_PATH pointing at the fake libnvidia-ml.so.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import need
from tests.support.nvml import (
    MIB,
    FakeGpu,
    FakeHost,
    FakeNvmlUnavailable,
    build_library,
    nvml_env,
    write_host,
)

# Runs in the subprocess: evaluates one line of Python per stdin line against pynvml and
# answers one JSON line: {"value": ...} or {"error": "NVMLError_...", "message": ...}.
DRIVER = r"""
import json, sys
import pynvml
from pynvml import *

def h(i):
    return nvmlDeviceGetHandleByIndex(i)

def plain(v):
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if hasattr(v, "_fields_"):
        return {f[0]: plain(getattr(v, f[0])) for f in v._fields_}
    if isinstance(v, pynvml.nvmlFriendlyObject):
        return {k: plain(x) for k, x in vars(v).items()}
    if isinstance(v, bytes):
        return v.decode()
    return v

ns = dict(globals())
for line in sys.stdin:
    try:
        try:
            code = compile(line, "<cmd>", "eval")
        except SyntaxError:
            exec(line, ns)
            value = None
        else:
            value = eval(code, ns)
        out = {"value": plain(value)}
    except pynvml.NVMLError as exc:
        out = {"error": type(exc).__name__, "message": str(exc)}
    print(json.dumps(out), flush=True)
"""

A5500 = FakeGpu(
    name="NVIDIA RTX A5500",
    uuid="GPU-5f2c8e1a-93b4-4d1e-b7a2-6c0e8d4f1a52",
    memory_total_mb=24564,
    memory_used_mb=19304,
    utilization_gpu=35,
    utilization_memory=20,
    temperature_c=54,
    power_mw=61000,
    power_limit_mw=230000,
    pci_bus_id="00000000:01:00.0",
    processes=[(4242, 18432)],
)
A400 = FakeGpu(
    name="NVIDIA RTX A400",
    uuid="GPU-a41d07c3-2e6f-4b8a-9d15-3f7c2b9e0a68",
    memory_total_mb=4094,
    memory_used_mb=312,
    utilization_gpu=3,
    utilization_memory=1,
    temperature_c=41,
    power_mw=9000,
    power_limit_mw=50000,
    pci_bus_id="00000000:02:00.0",
)


def seed_host(**changes: Any) -> FakeHost:
    return replace(FakeHost(gpus=[replace(A5500), replace(A400)]), **changes)


@pytest.fixture(scope="module")
def lib_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        return build_library(tmp_path_factory.mktemp("fake_nvml"))
    except FakeNvmlUnavailable as exc:
        if "gcc not found" in str(exc):
            need(str(exc))
        raise


class Pynvml:
    """A Python subprocess using the real pynvml against the fake library."""

    def __init__(self, lib_dir: Path, host_file: Path) -> None:
        env = {**os.environ, **nvml_env(lib_dir, host_file)}
        self.process = subprocess.Popen(
            [sys.executable, "-c", DRIVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )

    def ask(self, line: str) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            self.close()
            stderr = self.process.stderr.read() if self.process.stderr else ""
            raise AssertionError(f"driver died on {line!r}: {stderr}")
        result: dict[str, Any] = json.loads(answer)
        return result

    def value(self, line: str) -> Any:
        answer = self.ask(line)
        assert "value" in answer, f"{line}: {answer}"
        return answer["value"]

    def error(self, line: str) -> str:
        answer = self.ask(line)
        assert "error" in answer, f"{line}: expected an NVMLError, got {answer}"
        name: str = answer["error"]
        return name

    def close(self) -> None:
        if self.process.stdin and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream:
                stream.close()


@pytest.fixture
def host_file(tmp_path: Path) -> Path:
    path = tmp_path / "host.nvml"
    write_host(path, seed_host())
    return path


@pytest.fixture
def nvml(lib_dir: Path, host_file: Path) -> Iterator[Pynvml]:
    proc = Pynvml(lib_dir, host_file)
    yield proc
    proc.close()


def test_library_is_the_fake(nvml: Pynvml, lib_dir: Path) -> None:
    assert nvml.value("nvmlInit()") is None
    assert nvml.value("pynvml.nvmlLib._name") == "libnvidia-ml.so.1"
    maps = nvml.value("open('/proc/self/maps').read()")
    assert str(lib_dir / "libnvidia-ml.so.1") in maps


def test_two_gpu_host_field_by_field(nvml: Pynvml) -> None:
    nvml.value("nvmlInit()")
    assert nvml.value("nvmlSystemGetDriverVersion()") == "550.54.15"
    assert nvml.value("nvmlDeviceGetCount()") == 2
    for i, gpu in enumerate([A5500, A400]):
        assert nvml.value(f"nvmlDeviceGetName(h({i}))") == gpu.name
        assert nvml.value(f"nvmlDeviceGetUUID(h({i}))") == gpu.uuid
        total, used = gpu.memory_total_mb * MIB, gpu.memory_used_mb * MIB
        memory = nvml.value(f"nvmlDeviceGetMemoryInfo(h({i}))")
        assert memory == {"total": total, "free": total - used, "used": used}
        utilization = nvml.value(f"nvmlDeviceGetUtilizationRates(h({i}))")
        assert utilization == {"gpu": gpu.utilization_gpu, "memory": gpu.utilization_memory}
        temperature = nvml.value(f"nvmlDeviceGetTemperature(h({i}), NVML_TEMPERATURE_GPU)")
        assert temperature == gpu.temperature_c
        assert nvml.value(f"nvmlDeviceGetPowerUsage(h({i}))") == gpu.power_mw
        assert nvml.value(f"nvmlDeviceGetEnforcedPowerLimit(h({i}))") == gpu.power_limit_mw
        assert nvml.value(f"nvmlDeviceGetCudaComputeCapability(h({i}))") == [8, 6]
        pci = nvml.value(f"nvmlDeviceGetPciInfo(h({i}))")
        assert pci["busId"] == gpu.pci_bus_id
        assert (pci["domain"], pci["bus"], pci["device"]) == (0, i + 1, 0)
        assert pci["busIdLegacy"] == f"0000:0{i + 1}:00.0"
        processes = nvml.value(f"nvmlDeviceGetComputeRunningProcesses(h({i}))")
        assert [(p["pid"], p["usedGpuMemory"]) for p in processes] == [
            (pid, used_mb * MIB) for pid, used_mb in gpu.processes
        ]
    assert nvml.value("nvmlShutdown()") is None
    assert nvml.error("nvmlDeviceGetCount()") == "NVMLError_Uninitialized"


def test_many_processes_use_the_two_call_protocol(nvml: Pynvml, host_file: Path) -> None:
    procs = [(1000 + n, 100 + n) for n in range(7)]
    write_host(host_file, seed_host(gpus=[replace(A5500, processes=procs)]))
    nvml.value("nvmlInit()")
    found = nvml.value("nvmlDeviceGetComputeRunningProcesses(h(0))")
    assert [(p["pid"], p["usedGpuMemory"]) for p in found] == [(pid, mb * MIB) for pid, mb in procs]
    # The raw C protocol: size query, too small a buffer, then a big enough one.
    nvml.value("import ctypes; fn = pynvml.nvmlLib.nvmlDeviceGetComputeRunningProcesses_v3")
    nvml.value("n = ctypes.c_uint(0); arr = (c_nvmlProcessInfo_v3_t * 7)()")
    assert nvml.value("fn(h(0), ctypes.byref(n), None), n.value") == [7, 7]
    nvml.value("n.value = 3")
    assert nvml.value("fn(h(0), ctypes.byref(n), arr), n.value") == [7, 7]
    assert nvml.value("fn(h(0), ctypes.byref(n), arr), n.value, arr[6].pid") == [0, 7, 1006]
    assert nvml.value("hex(arr[0].gpuInstanceId)") == "0xffffffff"


def test_before_init_and_bad_index(nvml: Pynvml) -> None:
    assert nvml.error("nvmlDeviceGetCount()") == "NVMLError_Uninitialized"
    nvml.value("nvmlInit()")
    assert nvml.error("h(2)") == "NVMLError_InvalidArgument"
    assert nvml.error("nvmlDeviceGetTemperature(h(0), 1)") == "NVMLError_InvalidArgument"


def test_init_error(lib_dir: Path, tmp_path: Path) -> None:
    host_file = tmp_path / "host.nvml"
    write_host(host_file, seed_host(init_error="DRIVER_NOT_LOADED"))
    proc = Pynvml(lib_dir, host_file)
    try:
        answer = proc.ask("nvmlInit()")
        assert answer == {"error": "NVMLError_DriverNotLoaded", "message": "Driver Not Loaded"}
        assert proc.value("isinstance(pynvml.NVMLError(9), NVMLError_DriverNotLoaded)")
    finally:
        proc.close()


def test_missing_host_file_means_no_driver(lib_dir: Path, tmp_path: Path) -> None:
    proc = Pynvml(lib_dir, tmp_path / "absent.nvml")
    try:
        assert proc.error("nvmlInit()") == "NVMLError_DriverNotLoaded"
    finally:
        proc.close()


def test_lost_device(nvml: Pynvml, host_file: Path) -> None:
    write_host(host_file, seed_host(gpus=[replace(A5500, lost=True), replace(A400)]))
    nvml.value("nvmlInit()")
    assert nvml.value("nvmlDeviceGetCount()") == 2
    assert nvml.error("h(0)") == "NVMLError_GpuIsLost"
    assert nvml.value("nvmlDeviceGetName(h(1))") == A400.name


CALLS = {
    "name": "nvmlDeviceGetName(h(0))",
    "uuid": "nvmlDeviceGetUUID(h(0))",
    "memory": "nvmlDeviceGetMemoryInfo(h(0))",
    "utilization": "nvmlDeviceGetUtilizationRates(h(0))",
    "temperature": "nvmlDeviceGetTemperature(h(0), NVML_TEMPERATURE_GPU)",
    "power_usage": "nvmlDeviceGetPowerUsage(h(0))",
    "power_limit": "nvmlDeviceGetEnforcedPowerLimit(h(0))",
    "compute_capability": "nvmlDeviceGetCudaComputeCapability(h(0))",
    "pci": "nvmlDeviceGetPciInfo(h(0))",
    "processes": "nvmlDeviceGetComputeRunningProcesses(h(0))",
}


@pytest.mark.parametrize("field", sorted(CALLS))
def test_injected_error(nvml: Pynvml, host_file: Path, field: str) -> None:
    write_host(host_file, seed_host(gpus=[replace(A5500, errors={field: "NOT_SUPPORTED"})]))
    nvml.value("nvmlInit()")
    assert nvml.error(CALLS[field]) == "NVMLError_NotSupported"
    for other, call in CALLS.items():
        if other != field:
            nvml.value(call)


def test_error_string_from_the_library(nvml: Pynvml) -> None:
    # pynvml asks the library for codes its own table lacks, such as IN_USE (19).
    nvml.value("nvmlInit()")
    assert nvml.value("str(NVMLError(NVML_ERROR_IN_USE))") == "In use by another client"
    assert nvml.value("nvmlErrorString(NVML_ERROR_GPU_IS_LOST)") == "GPU is lost"


def test_changes_are_seen_while_running(nvml: Pynvml, host_file: Path) -> None:
    nvml.value("nvmlInit()")
    nvml.value("g0 = h(0)")
    assert nvml.value("nvmlDeviceGetMemoryInfo(g0).used") == A5500.memory_used_mb * MIB

    write_host(
        host_file, seed_host(gpus=[replace(A5500, lost=True), replace(A400, memory_used_mb=0)])
    )
    assert nvml.error("nvmlDeviceGetMemoryInfo(g0)") == "NVMLError_GpuIsLost"
    assert nvml.error("h(0)") == "NVMLError_GpuIsLost"
    assert nvml.value("nvmlDeviceGetMemoryInfo(h(1)).used") == 0

    write_host(host_file, seed_host())
    assert nvml.value("nvmlDeviceGetName(g0)") == A5500.name


def test_build_is_cached(tmp_path: Path) -> None:
    try:
        first = build_library(tmp_path)
    except FakeNvmlUnavailable as exc:
        if "gcc not found" in str(exc):
            need(str(exc))
        raise
    library = first / "libnvidia-ml.so.1"
    built = library.stat().st_mtime_ns
    assert build_library(tmp_path) == first
    assert library.stat().st_mtime_ns == built


def test_env_prepends(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LD_LIBRARY_PATH", "/opt/x")
    env = nvml_env(tmp_path / "lib", tmp_path / "host")
    assert env == {
        "LD_LIBRARY_PATH": f"{tmp_path / 'lib'}:/opt/x",
        "GPUFLEET_FAKE_NVML": str(tmp_path / "host"),
    }
