"""llama-cpp-python environments without a compile: CMake flags, preflight lines (injected host
answers; and the real host with a PATH lacking glslc), the compatibility key, ninja progress,
the tiny GGUF read back by the hub's reader, the verification's judgement, the store (recovery
after an agent restart, resolution for models), the wheel client against a real in-test
WheelCache server, the build_env/remove_env/tail_log tasks, and the envs in hello and
heartbeats."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from agent.compose import Podman
from agent.envs import flags, preflight
from agent.envs.commands import SESSION_FILE, kill_session, record_session
from agent.envs.preflight import SystemHost
from agent.envs.record import (
    BROKEN,
    BUILDING,
    FAILED,
    READY,
    EnvRecord,
    WheelInfo,
    split_name,
)
from agent.envs.store import EnvError, EnvStore
from agent.envs.tinygguf import tiny_gguf
from agent.envs.verify import judge
from agent.envs.wheels import GrpcWheels, WheelError, sha256_of
from agent.link import AgentLink, Identity, insecure_channel
from agent.main import task_kinds
from agent.probes import GpuInfo, NoProbe
from agent.processes import Processes, read_stat
from agent.projects import ProjectStore
from agent.tasks.context import TaskContext
from agent.tasks.runner import TaskRunner
from gpufleet import envkey
from gpufleet.v1 import agent_link_pb2 as pb
from gpufleet.v1 import types_pb2
from hub.models.gguf import read_header
from tests.agent.processes_support import free_port, spec, start_request, until
from tests.agent.support import run_task
from tests.agent.wheel_server import WheelServer
from tests.support.envs import builder, wheels_of

GIB = 1024**3

# -- pure: flags, key, progress ---------------------------------------------------------


def test_cmake_flags_per_backend() -> None:
    assert flags.cmake_args("cpu") == "-DGGML_NATIVE=OFF"
    assert flags.cmake_args("cuda", ("86", "90")) == (
        "-DGGML_NATIVE=OFF -DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=86;90"
    )
    assert flags.cmake_args("vulkan") == "-DGGML_NATIVE=OFF -DGGML_VULKAN=on"
    assert flags.cmake_args("rocm", ("gfx1100",)) == (
        "-DGGML_NATIVE=OFF -DGGML_HIP=on -DAMDGPU_TARGETS=gfx1100 -DGPU_TARGETS=gfx1100"
    )
    every = " ".join(flags.cmake_args(b, ("86",)) for b in ("cpu", "cuda", "vulkan", "rocm"))
    for old in ("HIPBLAS", "CUBLAS", "LLAMA_"):
        assert old not in every


def test_gpu_targets_and_toolkit_versions() -> None:
    assert flags.cuda_arch("8.6") == "86" and flags.cuda_arch("9.0") == "90"
    assert flags.cuda_arch("") == "" and flags.cuda_arch("eight") == ""
    assert flags.targets(["90", "86", "86"], ["80", ""]) == ("80", "86", "90")
    assert flags.nvcc_version("Cuda compilation tools, release 12.4, V12.4.131") == "12.4"
    assert flags.glslc_version("shaderc v2023.2 v2023.2-1\nspirv-tools ...") == "2023.2"
    assert flags.glslc_version("shaderc 2023.2-1\n") == "2023.2"
    assert flags.hipcc_version("HIP version: 6.1.40091-a8dbc0c19\n") == "6.1"
    assert flags.cmake_version("cmake version 3.25.1\n") == (3, 25, 1)
    assert flags.vulkan_header_version("#define VK_HEADER_VERSION 239\n") == 239


def test_ninja_progress_lines() -> None:
    step = flags.ninja_step("  [37/212] Building CXX object vendor/llama.cpp/ggml.cpp.o")
    assert step is not None and step.describe() == "compile 37/212 (17%)"
    assert flags.ninja_step("[212/212] Linking CXX shared library libllama.so") is not None
    assert flags.ninja_step("-- Configuring done") is None
    assert flags.ninja_step("[3/0] nonsense") is None and flags.ninja_step("[9/3] x") is None


def test_key_parts() -> None:
    parts = envkey.parts(
        "0.3.36", "cuda", "nvcc 12.4", ["90", "86"], "x86_64", "glibc 2.36", "cp311"
    )
    assert parts["targets"] == "86;90"
    assert envkey.describe(parts) == (
        "llama-cpp-python 0.3.36 cuda (nvcc 12.4) for 86;90, x86_64 glibc 2.36 cp311"
    )
    other = dict(parts, toolkit="nvcc 12.6")
    assert envkey.key(parts) != envkey.key(other)


# -- preflight -----------------------------------------------------------------------------


class FakeHost:
    """Injected answers: the programs on PATH, the files there, free space, command output."""

    def __init__(
        self,
        programs: Sequence[str] = ("gcc", "g++", "cmake"),
        files: Sequence[str] = (),
        free: int = 100 * GIB,
        outputs: dict[str, tuple[int, str]] | None = None,
        texts: dict[str, str] | None = None,
    ) -> None:
        self.programs = set(programs)
        self.files = set(files)
        self.free = free
        self.outputs = {"cmake": (0, "cmake version 3.25.1\n"), **(outputs or {})}
        self.texts = texts or {}
        self.env: dict[str, str] = {}

    def which(self, name: str) -> str | None:
        return f"/usr/bin/{name}" if name in self.programs else None

    def exists(self, path: str) -> bool:
        return path in self.files

    def read(self, path: str) -> str:
        return self.texts.get(path, "")

    def variable(self, name: str) -> str:
        return self.env.get(name, "")

    def free_bytes(self, path: Path) -> int:
        return self.free

    async def output(self, argv: Sequence[str]) -> tuple[int, str]:
        name = Path(argv[0]).name
        if argv[1:2] == ["-I"]:
            name = "vkprobe"
        return self.outputs.get(name, (127, f"{name}: not found"))


def checked(
    host: FakeHost, backend: str, gpus: Sequence[GpuInfo] = (), extra: Sequence[str] = ()
) -> preflight.Checked:
    return asyncio.run(preflight.check(host, backend, Path("/state/envs"), gpus, extra))


def gpu(index: int, vendor: str, cc: str = "", gfx: str = "") -> GpuInfo:
    return GpuInfo(index, f"GPU-{index}", "gpu", vendor, 24000, 0, cc, gfx_target=gfx)


def test_preflight_cpu_needs_compilers_cmake_and_disk() -> None:
    assert checked(FakeHost(), "cpu").problems == ()
    assert checked(FakeHost(programs=()), "cpu").problems == (
        "no C compiler (gcc): install Debian's package gcc",
        "no C++ compiler (g++): install Debian's package g++",
        "no cmake: install Debian's package cmake (3.21 or newer)",
    )
    old = FakeHost(outputs={"cmake": (0, "cmake version 3.18.4\n")})
    assert checked(old, "cpu").problems == (
        "cmake 3.18.4 is too old: llama.cpp needs 3.21 or newer (Debian 12's package cmake, "
        "or `pip install cmake`)",
    )
    full = FakeHost(free=int(1.5 * GIB))
    assert checked(full, "cpu").problems == (
        "only 1.5 GiB free under /state/envs: a cpu build needs 3 GiB; free some space or use "
        "another --state-dir",
    )


def test_preflight_cuda_finds_nvcc_and_builds_for_the_node_gpus_only() -> None:
    host = FakeHost(
        files=["/usr/local/cuda/bin/nvcc"],
        outputs={"nvcc": (0, "Cuda compilation tools, release 12.4, V12.4.131")},
    )
    found = checked(
        host,
        "cuda",
        [gpu(0, "nvidia", "8.6"), gpu(1, "nvidia", "8.6"), gpu(2, "amd", gfx="gfx1100")],
        ["90"],
    )
    assert found.problems == ()
    assert found.toolchain.toolkit == "nvcc 12.4" and found.toolchain.targets == ("86", "90")
    assert found.toolchain.env == {"CUDACXX": "/usr/local/cuda/bin/nvcc"}
    assert flags.cmake_args("cuda", found.toolchain.targets).endswith("ARCHITECTURES=86;90")
    assert checked(FakeHost(), "cuda").problems == (
        "no CUDA compiler nvcc on PATH or in /usr/local/cuda/bin: install the CUDA toolkit "
        "(Debian's package nvidia-cuda-toolkit, or NVIDIA's cuda-toolkit)",
        "no NVIDIA GPU with a compute capability on this node: name the CUDA architectures to "
        "build for as extra targets (e.g. 86)",
    )


VULKAN_FILES = ["/usr/include/vulkan/vulkan.h", "/usr/share/cmake/SPIRV-Headers"]
NEW_HEADERS = {"/usr/include/vulkan/vulkan_core.h": "#define VK_HEADER_VERSION 309\n"}
LAVAPIPE = (
    0,
    '{"loader": true, "devices": [{"name": "llvmpipe (LLVM 15.0.6, 256 bits)", '
    '"type": "cpu"}], "error": ""}',
)


def test_preflight_vulkan_lines_per_missing_piece() -> None:
    ready = FakeHost(
        programs=("gcc", "g++", "cmake", "glslc"),
        files=VULKAN_FILES,
        texts=NEW_HEADERS,
        outputs={"glslc": (0, "shaderc v2023.2 v2023.2-1\n"), "vkprobe": LAVAPIPE},
    )
    assert checked(ready, "vulkan").problems == (
        "the only Vulkan device is a CPU one (llvmpipe (LLVM 15.0.6, 256 bits)), which "
        "llama.cpp uses only when named: set GGML_VK_VISIBLE_DEVICES=0 in the agent's "
        "environment, or install a GPU driver",
    )
    ready.env["GGML_VK_VISIBLE_DEVICES"] = "0"
    found = checked(ready, "vulkan")
    assert found.problems == ()
    assert found.toolchain.toolkit == "glslc 2023.2"
    assert found.toolchain.devices == ("llvmpipe (LLVM 15.0.6, 256 bits) (cpu)",)
    bare = FakeHost(outputs={"vkprobe": (0, '{"loader": false, "devices": [], "error": "x"}')})
    assert checked(bare, "vulkan").problems == (
        "no glslc (the Vulkan shader compiler) on PATH: install Debian's package glslc",
        "no Vulkan headers (/usr/include/vulkan/vulkan.h): install Debian's package libvulkan-dev",
        "no SPIR-V headers (SPIRV-HeadersConfig.cmake): install Debian's package spirv-headers",
        "no Vulkan loader (libvulkan.so.1): install Debian's package libvulkan1",
    )
    no_device = FakeHost(
        programs=("gcc", "g++", "cmake", "glslc"),
        files=VULKAN_FILES,
        texts={"/usr/include/vulkan/vulkan_core.h": "#define VK_HEADER_VERSION 239"},
        outputs={
            "vkprobe": (
                0,
                '{"loader": true, "devices": [], "error": "vkCreateInstance returned -9"}',
            )
        },
    )
    assert checked(no_device, "vulkan").problems == (
        "the Vulkan headers in /usr/include are too old (1.3.239): llama.cpp's Vulkan backend "
        "needs 1.3.272 or newer: install Debian 13's libvulkan-dev, or the LunarG Vulkan SDK "
        "and set VULKAN_SDK",
        "no Vulkan device (vkCreateInstance returned -9): install mesa-vulkan-drivers or a GPU "
        "driver",
    )


def test_preflight_rocm_takes_the_gfx_targets_of_the_amd_gpus() -> None:
    host = FakeHost(
        programs=("gcc", "g++", "cmake", "hipcc"),
        outputs={"hipcc": (0, "HIP version: 6.1.40091-a8dbc0c19\n")},
    )
    found = checked(host, "rocm", [gpu(0, "amd", gfx="gfx1100"), gpu(1, "amd", gfx="gfx90a")])
    assert found.problems == ()
    assert found.toolchain.toolkit == "hipcc 6.1"
    assert found.toolchain.targets == ("gfx1100", "gfx90a")
    assert checked(FakeHost(), "rocm").problems == (
        "no hipcc on PATH or in /opt/rocm/bin: install ROCm's HIP SDK (AMD's package "
        "rocm-hip-sdk, or Debian's hipcc)",
        "no AMD GPU with a gfx target on this node: name the targets to build for as extra "
        "targets (e.g. gfx1100)",
    )


def test_the_real_vulkan_device_check_runs_in_its_own_process() -> None:
    """vkprobe.py through ctypes against this host's loader: a device list or a reason."""
    code, out = asyncio.run(
        SystemHost(os.environ).output([sys.executable, "-I", str(preflight.VKPROBE)])
    )
    assert code == 0, out
    assert out.startswith('{"loader": ')


# -- the tiny GGUF and the verification's judgement -------------------------------------


def test_the_tiny_gguf_reads_back_with_the_hubs_reader() -> None:
    data = tiny_gguf()
    assert data == tiny_gguf() and data != tiny_gguf(seed=1)
    header = read_header(io.BytesIO(data))
    assert header.version == 3
    assert header.metadata["general.architecture"] == "llama"
    assert header.metadata["llama.block_count"] == 2
    assert header.metadata["tokenizer.ggml.model"] == "llama"
    assert len(header.tensors) == 3 + 2 * 9
    embd = next(t for t in header.tensors if t.name == "token_embd.weight")
    assert embd.shape == (32, header.metadata["llama.vocab_size"])
    assert all(t.offset % 32 == 0 for t in header.tensors)
    assert header.tensor_bytes() is not None and len(data) >= header.tensor_bytes()  # type: ignore[operator]
    assert len(data) < 300_000


OK_OUT = 'GPUFLEET-VERIFY {"gpu_offload": true, "system_info": "Vulkan : ...", "answered": true}'
VK_LOG = (
    "llama_prepare_model_devices: using device Vulkan0 (llvmpipe (LLVM 15.0.6, 256 bits)) "
    "(unknown id) - 2048 MiB free\n"
    "load_tensors: layer   0 assigned to device Vulkan0, is_swa = 0\n"
    "load_tensors: offloaded 3/3 layers to GPU\n"
)


def test_verification_judges_offload_layers_and_devices() -> None:
    found = judge("vulkan", 0, OK_OUT, VK_LOG)
    assert found.state == READY and found.gpu_offload and found.offloaded == (3, 3)
    assert found.devices == ("Vulkan0: llvmpipe (LLVM 15.0.6, 256 bits)",)
    assert (
        found.message
        == "verified: 3/3 layers offloaded to Vulkan0: llvmpipe (LLVM 15.0.6, 256 bits)"
    )
    cpu_only = OK_OUT.replace('"gpu_offload": true', '"gpu_offload": false')
    assert judge("vulkan", 0, cpu_only, "").message == (
        "llama_supports_gpu_offload() is false: this vulkan build has no GPU backend (built "
        "CPU-only)"
    )
    no_device = judge("vulkan", 0, cpu_only, "ggml_vulkan: No devices found.\n")
    assert no_device.state == BROKEN and no_device.message == (
        "llama.cpp's vulkan backend found no device it would use; a CPU Vulkan device (Mesa's "
        "llvmpipe) is used only when named: set GGML_VK_VISIBLE_DEVICES=0 in the agent's "
        "environment"
    )
    none = judge("vulkan", 0, OK_OUT, "load_tensors: offloaded 0/3 layers to GPU\n")
    assert none.state == BROKEN and none.message.startswith("no layer was offloaded to a GPU")
    assert "GGML_VK_VISIBLE_DEVICES=0" in none.message
    partial = judge("cuda", 0, OK_OUT, VK_LOG.replace("3/3", "2/3").replace("Vulkan0", "CUDA0"))
    assert partial.state == BROKEN and partial.message == "only 2/3 layers were offloaded"
    wrong = judge("cuda", 0, OK_OUT, VK_LOG)
    assert wrong.state == BROKEN and "not to a cuda device" in wrong.message
    crashed = judge("cpu", 1, "", "Traceback ...\nOSError: libllama.so: cannot open\n")
    assert crashed.state == BROKEN and "exit status 1" in crashed.message
    assert judge("cpu", 0, cpu_only, "").state == READY


# -- the store: records, recovery, resolution ---------------------------------------------


def record(name: str, state: str, **changes: object) -> EnvRecord:
    backend, version = split_name(name)
    return EnvRecord(name, backend, version, state).with_(**changes)


def test_records_round_trip_and_an_agent_restart_fails_an_unfinished_build(tmp_path: Path) -> None:
    store = EnvStore(tmp_path)
    done = record("cpu-0.3.36", READY, devices=("x",), built_at=1.5, key="k")
    store.write(done)
    assert store.read("cpu-0.3.36") == done
    store.write(record("vulkan-0.3.36", BUILDING, message="compile: compile 3/517 (1%)"))
    partial = store.directory("vulkan-0.3.36")
    (partial / "bin").mkdir()
    (partial / "bin" / "python").write_text("")
    (partial / ".build" / "tmp").mkdir(parents=True)
    (partial / "build.log").write_text("[3/517] ...\n")
    assert EnvStore(tmp_path).recover() == ["vulkan-0.3.36"]
    failed = store.read("vulkan-0.3.36")
    assert failed is not None and failed.state == FAILED
    assert failed.message == "the agent restarted during the build; build it again"
    assert sorted(p.name for p in partial.iterdir()) == ["build.log", "env.json"]
    assert store.read("cpu-0.3.36") == done  # untouched
    assert EnvStore(tmp_path).recover() == []


def test_an_agent_restart_kills_what_the_unfinished_build_left_compiling(tmp_path: Path) -> None:
    """A build's session outlives a killed agent (the unit's KillMode=process): the next agent
    kills it, compilers in process groups of their own included (as ninja runs them)."""
    store = EnvStore(tmp_path)
    store.write(record("cpu-0.3.36", BUILDING, message="compile: compile 9/193 (5%)"))
    script = "sleep 300 & python3 -c 'import os, time; os.setpgid(0, 0); time.sleep(300)' & wait"
    leader = subprocess.Popen(["sh", "-c", script], start_new_session=True)
    try:
        record_session(store.directory("cpu-0.3.36") / SESSION_FILE, leader.pid)
        until(lambda: len(session_members(leader.pid)) == 3)  # sh, sleep, python's own group
        assert EnvStore(tmp_path).recover() == ["cpu-0.3.36"]
        leader.wait(10)
        until(lambda: not session_members(leader.pid))
    finally:
        kill_session(leader.pid)
        leader.wait(10)
    failed = store.read("cpu-0.3.36")
    assert failed is not None and failed.state == FAILED


def session_members(sid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = read_stat(int(entry.name))
            if stat is not None and stat.session == sid and stat.state not in "ZX":
                found.append(int(entry.name))
    return found


def test_resolution_for_host_process_projects(tmp_path: Path) -> None:
    store = EnvStore(tmp_path)
    with pytest.raises(EnvError) as missing:
        store.resolve("vulkan", {}, "gpu-a")
    assert str(missing.value) == (
        "no llama-cpp-python environment for backend vulkan on this node: build one with "
        "`hubctl envs build --backend vulkan --node gpu-a`, or start the agent with "
        "--llama-env vulkan=DIR"
    )
    store.write(record("vulkan-0.3.9", READY))
    store.write(record("vulkan-0.3.36", READY))
    store.write(record("vulkan-0.3.40", BROKEN, message="only 2/3 layers were offloaded"))
    assert store.resolve("vulkan", {}) == store.directory("vulkan-0.3.36")  # newest ready
    assert store.resolve("vulkan", {"vulkan": Path("/opt/vk")}) == Path("/opt/vk")  # explicit
    assert store.resolve("vulkan-0.3.9", {"vulkan": Path("/opt/vk")}) == store.directory(
        "vulkan-0.3.9"
    )
    with pytest.raises(
        EnvError,
        match=r"^llama-cpp-python environment vulkan-0\.3\.40 is broken: "
        r"only 2/3 layers were offloaded$",
    ):
        store.resolve("vulkan-0.3.40", {})
    with pytest.raises(EnvError, match=r"^no llama-cpp-python environment cuda-0\.3\.36 on this"):
        store.resolve("cuda-0.3.36", {})
    with pytest.raises(EnvError, match="is not one of cuda, vulkan, rocm, cpu"):
        store.resolve("metal", {})


# -- the wheel cache client against a real in-test server -------------------------------


@pytest.fixture
def wheel_server(tmp_path: Path) -> Iterator[WheelServer]:
    server = WheelServer(tmp_path / "cache")
    yield server
    server.close()


def test_wheels_upload_download_and_sha256(tmp_path: Path, wheel_server: WheelServer) -> None:
    wheels = GrpcWheels(insecure_channel(wheel_server.target))
    wheel = tmp_path / "llama_cpp_python-0.3.36-cp311-cp311-linux_x86_64.whl"
    wheel.write_bytes(os.urandom(2 * 1024 * 1024 + 5))  # three chunks
    info = WheelInfo(
        "a" * 64,
        wheel.name,
        wheel.stat().st_size,
        sha256_of(wheel),
        {"backend": "cpu"},
        "node-a",
        1.0,
    )
    into = tmp_path / "into"
    into.mkdir()

    async def scenario() -> None:
        assert await wheels.download("a" * 64, into) is None  # NOT_FOUND
        await wheels.upload(wheel, info)
        await wheels.upload(wheel, info)  # ALREADY_EXISTS: as good as stored
        got = await wheels.download("a" * 64, into)
        assert got == into / wheel.name and got.read_bytes() == wheel.read_bytes()
        got.unlink()
        stored = tmp_path / "cache" / ("a" * 64) / wheel.name
        stored.write_bytes(b"tampered" + stored.read_bytes()[8:])
        with pytest.raises(WheelError, match="does not match its sha256"):
            await wheels.download("a" * 64, into)
        assert list(into.iterdir()) == []  # nothing half-written is left

    asyncio.run(scenario())
    assert wheel_server.servicer.uploads == ["a" * 64]


def test_an_unreachable_cache_is_one_line(tmp_path: Path) -> None:
    wheels = GrpcWheels(insecure_channel("127.0.0.1:1"), timeout_s=5)
    with pytest.raises(WheelError, match=r"^cannot download from the wheel cache: UNAVAILABLE"):
        asyncio.run(wheels.download("b" * 64, tmp_path))


# -- tasks --------------------------------------------------------------------------------


def context(state: Path, env: dict[str, str] | None = None) -> TaskContext:
    return TaskContext.create(
        ProjectStore(state),
        Podman("gpu-a"),
        NoProbe(),
        {},
        processes=Processes(state),
        envs=EnvStore(state),
        builder=builder(state, wheels_of(None), env),
        node_name="gpu-a",
    )


def build_request(backend: str, task_id: str = "b") -> pb.TaskRequest:
    return pb.TaskRequest(task_id=task_id, build_env=pb.BuildEnv(backend=backend))


def test_a_failed_preflight_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    """The real host, with a PATH that has the compilers and cmake but no glslc."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for program in ("gcc", "g++", "cmake"):
        found = shutil.which(program)
        if found is not None:
            (tools / program).symlink_to(found)
    state = tmp_path / "state"
    result = run_task(context(state, {"PATH": str(tools)}), build_request("vulkan"))
    assert result.status == types_pb2.TASK_STATUS_FAILED
    assert result.message.startswith(
        "cannot build vulkan-0.3.36: no glslc (the Vulkan shader "
        "compiler) on PATH: install Debian's package glslc"
    )
    assert "\n" not in result.message
    assert not result.HasField("env")  # the node has no such environment: none is reported
    assert not (state / "envs").exists() or list((state / "envs").iterdir()) == []


def test_build_env_refuses_what_no_agent_could_build(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    bad = run_task(ctx, build_request("metal"))
    assert bad.status == types_pb2.TASK_STATUS_FAILED
    assert bad.message == "backend 'metal' is not one of cuda, vulkan, rocm, cpu"
    version = pb.TaskRequest(task_id="v", build_env=pb.BuildEnv(backend="cpu", version="1; rm"))
    assert "is not a version" in run_task(ctx, version).message


def test_a_model_starts_from_the_ready_environment_which_then_cannot_be_removed(
    tmp_path: Path,
) -> None:
    """start_project of a process whose environment is the backend "cpu": no --llama-env, so
    the newest ready cpu environment; remove_env refuses it while the server runs."""
    state = tmp_path / "state"
    store = EnvStore(state)
    store.write(record("cpu-0.3.36", READY))
    directory = store.directory("cpu-0.3.36")
    (directory / "bin").mkdir()
    (directory / "bin" / "python").symlink_to(sys.executable)
    ctx = context(state)
    started = run_task(ctx, start_request("model-tiny", spec(tmp_path, free_port())))
    assert started.status == types_pb2.TASK_STATUS_CHANGED, started.message
    try:
        until(lambda: ctx.processes.state("model-tiny").alive)
        refused = run_task(
            ctx, pb.TaskRequest(task_id="r", remove_env=pb.RemoveEnv(name="cpu-0.3.36"))
        )
        assert refused.status == types_pb2.TASK_STATUS_FAILED
        assert refused.message == "cpu-0.3.36 is in use by model-tiny: stop it first"
        assert directory.is_dir()
        # The hub learns the same from the agent's report: the projects running from it.
        link = AgentLink("unused:1", Identity("gpu-a", "id"), NoProbe(), envs=store,
                         processes=ctx.processes)  # fmt: skip
        [reported] = asyncio.run(link.hello()).envs
        assert (reported.name, list(reported.projects)) == ("cpu-0.3.36", ["model-tiny"])
    finally:
        asyncio.run(ctx.processes.stop("model-tiny"))
    beat = asyncio.run(link.heartbeat(1))
    assert [list(e.projects) for e in beat.envs.envs] == [[]]  # stopped: a changed report
    removed = run_task(
        ctx, pb.TaskRequest(task_id="r2", remove_env=pb.RemoveEnv(name="cpu-0.3.36"))
    )
    assert (
        removed.status == types_pb2.TASK_STATUS_CHANGED and removed.message == "removed cpu-0.3.36"
    )
    assert not directory.exists()
    again = run_task(ctx, pb.TaskRequest(task_id="r3", remove_env=pb.RemoveEnv(name="cpu-0.3.36")))
    assert again.status == types_pb2.TASK_STATUS_OK
    gone = run_task(ctx, start_request("model-tiny", spec(tmp_path, free_port()), "t-again"))
    assert gone.status == types_pb2.TASK_STATUS_FAILED
    assert gone.message == (
        "no llama-cpp-python environment for backend cpu on this node: build one with "
        "`hubctl envs build --backend cpu --node gpu-a`, or start the agent with "
        "--llama-env cpu=DIR"
    )


def test_tail_log_reads_an_environments_build_log(tmp_path: Path) -> None:
    store = EnvStore(tmp_path)
    store.write(record("vulkan-0.3.36", FAILED, message="compile failed"))
    store.log_file("vulkan-0.3.36").write_text("".join(f"line {n}\n" for n in range(500)))
    ctx = context(tmp_path)
    tail = run_task(
        ctx, pb.TaskRequest(task_id="t", tail_log=pb.TailLog(env="vulkan-0.3.36", lines=3))
    )
    assert tail.status == types_pb2.TASK_STATUS_OK
    assert tail.log == "line 497\nline 498\nline 499"
    assert tail.message == "3 lines of the build log of vulkan-0.3.36"
    none = run_task(ctx, pb.TaskRequest(task_id="u", tail_log=pb.TailLog(env="cuda-0.3.36")))
    assert (
        none.message
        == "no build log of environment cuda-0.3.36 on this node: it was not built here"
    )


# -- reports --------------------------------------------------------------------------------


def test_envs_ride_in_the_hello_and_in_a_heartbeat_when_they_change(tmp_path: Path) -> None:
    store = EnvStore(tmp_path)
    store.write(
        record(
            "cpu-0.3.36",
            READY,
            gpu_offload=False,
            built_at=1700000000.0,
            origin="compiled",
            key="k",
            system_info="CPU : AVX2 = 1",
        )
    )

    async def scenario() -> None:
        link = AgentLink("unused:1", Identity("gpu-a", "id"), NoProbe(), envs=store)
        hello = await link.hello()
        assert [(e.name, e.state, e.origin) for e in hello.envs] == [
            ("cpu-0.3.36", "ready", "compiled")
        ]
        assert hello.envs[0].built_at.seconds == 1700000000
        assert not (await link.heartbeat(1)).HasField("envs")
        store.write(record("vulkan-0.3.36", BUILDING, message="compile: compile 1/517 (0%)"))
        beat = await link.heartbeat(2)
        assert [(e.name, e.state) for e in beat.envs.envs] == [
            ("cpu-0.3.36", "ready"),
            ("vulkan-0.3.36", "building"),
        ]
        assert not (await link.heartbeat(3)).HasField("envs")
        await store.discard("vulkan-0.3.36")
        assert [e.name for e in (await link.heartbeat(4)).envs.envs] == ["cpu-0.3.36"]

    asyncio.run(scenario())


def test_check_mode_runs_the_preflight_and_builds_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    request = build_request("cpu")
    request.check_mode = True
    result = run_task(context(state), request)
    assert result.status == types_pb2.TASK_STATUS_CHANGED, result.message
    assert result.message.startswith("would build cpu-0.3.36 (llama-cpp-python 0.3.36 cpu, ")
    assert not (state / "envs").exists()


def test_a_failed_fetch_fails_the_task_with_the_log_tail_and_removes_the_venv(
    tmp_path: Path,
) -> None:
    """A version pip cannot find: the build fails in fetch (for real: venv, pip download)."""
    state = tmp_path / "state"
    request = pb.TaskRequest(task_id="f", build_env=pb.BuildEnv(backend="cpu", version="0.0.1"))
    result = run_long(context(state), request)
    assert result.status == types_pb2.TASK_STATUS_FAILED
    first, *tail = result.message.splitlines()
    assert first.startswith("fetch failed: ") and "exited with status 1" in first
    assert any("llama-cpp-python==0.0.1" in line for line in tail), tail
    assert result.env.state == "failed" and result.env.message.startswith("fetch failed: ")
    directory = EnvStore(state).directory("cpu-0.0.1")
    assert sorted(p.name for p in directory.iterdir()) == ["build.log", "env.json"]
    log = run_task(
        context(state), pb.TaskRequest(task_id="l", tail_log=pb.TailLog(env="cpu-0.0.1"))
    )
    assert "(exit status 1)" in log.log


def run_long(ctx: TaskContext, request: pb.TaskRequest, within: float = 300) -> pb.TaskResult:
    """run_task for a task that takes longer than its 10 s."""

    async def scenario() -> pb.TaskResult:
        runner = TaskRunner(task_kinds(), ctx)
        done: asyncio.Future[pb.TaskResult] = asyncio.get_running_loop().create_future()

        def emit(message: pb.AgentMessage) -> None:
            if message.HasField("task_result") and not done.done():
                done.set_result(message.task_result)

        runner.attach(emit)
        runner.submit(request)
        return await asyncio.wait_for(done, within)

    return asyncio.run(scenario())


def test_a_discarded_environment_is_gone_at_once_and_a_crash_leftover_at_the_next_start(
    tmp_path: Path,
) -> None:
    """Removing a venv of thousands of files takes seconds: it is renamed away (no longer
    listed, its name free for a new build) and deleted off the event loop; a rename a crash
    left behind is deleted by the next agent's recover()."""
    store = EnvStore(tmp_path)
    store.write(record("cpu-0.3.36", READY))
    (store.directory("cpu-0.3.36") / "lib").mkdir()
    (store.directory("cpu-0.3.36") / "lib" / "x.py").write_text("x")
    asyncio.run(store.discard("cpu-0.3.36"))
    asyncio.run(store.discard("cpu-0.3.36"))  # none: nothing to do
    assert store.records() == [] and list(store.root.iterdir()) == []
    leftover = store.root / ".removing-cpu-0.3.36-1-2"
    (leftover / "lib").mkdir(parents=True)
    store.write(record("vulkan-0.3.36", READY))
    assert [r.name for r in store.records()] == ["vulkan-0.3.36"]  # never listed
    store.recover()
    assert sorted(p.name for p in store.root.iterdir()) == ["vulkan-0.3.36"]


def test_the_hello_names_the_backends_given_with_llama_env(tmp_path: Path) -> None:
    link = AgentLink("unused:1", Identity("gpu-a", "id"), NoProbe(), envs=EnvStore(tmp_path),
                     llama_env_backends=["cpu", "cuda"])  # fmt: skip
    hello = asyncio.run(link.hello())
    assert list(hello.llama_env_backends) == ["cpu", "cuda"] and list(hello.envs) == []
