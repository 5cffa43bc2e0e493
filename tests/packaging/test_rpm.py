"""The RPMs: their files, config files, scriptlets, and an install that runs."""

from __future__ import annotations

import json
from pathlib import Path

from tests.packaging.conftest import Built, in_root, rpm

VENV = "/opt/gpufleet/venv"


def files(path: Path) -> set[str]:
    return set(rpm("-qlp", path).split())


def test_packages_hold_the_expected_files(built: Built) -> None:
    runtime = files(built.rpms["gpufleet-runtime"])
    for name in ("python", "gpufleet-agent", "gpufleet-hub", "gpufleet-gateway", "hubctl",
                 "podman-compose"):  # fmt: skip
        assert f"{VENV}/bin/{name}" in runtime
    assert f"{VENV}/pyvenv.cfg" in runtime
    site = f"{VENV}/lib/python3.11/site-packages"
    for module in ("agent/main.py", "hub/main.py", "cli/main.py", "gpufleet/settings.py",
                   "gpufleet/sdnotify.py", "gpufleet/v1/agent_link_pb2.py", "grpc/__init__.py",
                   "psycopg/__init__.py", "hub/store/migrations/script.py.mako",
                   "gateway/main.py", "aiohttp/__init__.py"):  # fmt: skip
        assert f"{site}/{module}" in runtime, module
    assert f"{site}/agent/__pycache__/main.cpython-311.pyc" in runtime
    assert "/usr/lib/systemd/system-preset/90-gpufleet.preset" in runtime
    assert not any(name.startswith(f"{site}/pip/") for name in runtime), "pip stays out"

    assert {
        "/usr/bin/gpufleet-agent",
        "/usr/lib/systemd/system/gpufleet-agent.service",
        "/etc/gpufleet/agent.yaml",
        "/var/lib/gpufleet-agent",
        "/usr/share/gpufleet/examples/inventories/h100x8.yaml",
    } <= files(built.rpms["gpufleet-agent"])
    assert {
        "/usr/bin/gpufleet-hub",
        "/usr/lib/systemd/system/gpufleet-hub.service",
        "/usr/lib/sysusers.d/gpufleet-hub.conf",
        "/etc/gpufleet/hub.yaml",
        "/etc/gpufleet/configs",
        "/var/lib/gpufleet-hub",
        "/usr/share/gpufleet/examples/configs/big-chat.yaml",
        "/etc/gpufleet/models",
        "/usr/share/gpufleet/examples/models/llama31-8b-instruct.yaml",
    } <= files(built.rpms["gpufleet-hub"])
    gateway = files(built.rpms["gpufleet-gateway"])
    assert {
        "/usr/bin/gpufleet-gateway",
        "/usr/lib/systemd/system/gpufleet-gateway.service",
        "/usr/lib/sysusers.d/gpufleet-gateway.conf",
        "/etc/gpufleet/gateway.yaml",
        "/var/lib/gpufleet-gateway",
    } <= gateway
    # Thin: no examples or venv files of its own (the doc dir is versioned on Debian's rpm).
    assert not [name for name in gateway if name.startswith(("/opt/", "/usr/share/gpufleet"))]
    assert files(built.rpms["hubctl"]) == {"/usr/bin/hubctl"}


def test_config_files_are_kept_on_upgrade(built: Built) -> None:
    for package, config in (("gpufleet-agent", "agent.yaml"), ("gpufleet-hub", "hub.yaml"),
                            ("gpufleet-gateway", "gateway.yaml")):  # fmt: skip
        path = built.rpms[package]
        assert rpm("-qcp", path).split() == [f"/etc/gpufleet/{config}"]
        flags = rpm("-qp", "--qf", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]", path)
        assert f"/etc/gpufleet/{config} cn" in flags.splitlines()  # config, noreplace
    modes = rpm("-qp", "--qf", "[%{FILENAMES} %{FILEMODES:perms} %{FILEGROUPNAME}\n]",
                built.rpms["gpufleet-hub"])  # fmt: skip
    assert "/etc/gpufleet/hub.yaml -rw-r----- gpufleet" in modes.splitlines()
    modes = rpm("-qp", "--qf", "[%{FILENAMES} %{FILEMODES:perms} %{FILEUSERNAME}\n]",
                built.rpms["gpufleet-gateway"])  # fmt: skip
    # A join token may sit in gateway.yaml: never world-readable; the state dir holds its key.
    assert "/etc/gpufleet/gateway.yaml -rw-r----- root" in modes.splitlines()
    assert "/var/lib/gpufleet-gateway drwx------ gpufleet-gateway" in modes.splitlines()


def test_scriptlets_enable_restart_stop_and_create_the_daemon_users(built: Built) -> None:
    for package in ("gpufleet-agent", "gpufleet-hub", "gpufleet-gateway"):
        unit = f"{package}.service"
        scripts = rpm("-qp", "--scripts", built.rpms[package])
        post = scripts.split("postinstall scriptlet")[1].split("scriptlet")[0]
        preun = scripts.split("preuninstall scriptlet")[1].split("scriptlet")[0]
        postun = scripts.split("postuninstall scriptlet")[1]
        assert "preset" in post and unit in post
        assert "disable --now" in preun and unit in preun
        assert "try-restart" in postun and unit in postun
    hub_pre = rpm("-qp", "--scripts", built.rpms["gpufleet-hub"]).split("preinstall scriptlet")
    assert "gpufleet" in hub_pre[1].split("scriptlet")[0]
    assert "useradd" in hub_pre[1] or "systemd-sysusers" in hub_pre[1]
    gateway_pre = rpm("-qp", "--scripts", built.rpms["gpufleet-gateway"])
    gateway_pre = gateway_pre.split("preinstall scriptlet")[1].split("scriptlet")[0]
    assert "gpufleet-gateway" in gateway_pre
    assert "useradd" in gateway_pre or "systemd-sysusers" in gateway_pre


def test_runtime_requires_its_interpreter_and_nothing_from_its_wheels(built: Built) -> None:
    requires = rpm("-qpR", built.rpms["gpufleet-runtime"]).splitlines()
    assert "python(abi) = 3.11" in requires
    assert not [line for line in requires if "python3.11dist" in line or ".so" in line]
    provides = rpm("-qp", "--provides", built.rpms["gpufleet-runtime"]).splitlines()
    assert not [line for line in provides if ".so" in line], "the venv's libraries stay private"
    for package in ("gpufleet-agent", "gpufleet-gateway"):
        requires = rpm("-qpR", built.rpms[package]).splitlines()
        assert any(line.startswith("gpufleet-runtime = ") for line in requires), package


def test_installed_agent_runs_from_its_own_venv(scratch_root: Path) -> None:
    version = in_root(scratch_root, "gpufleet-agent --version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("gpufleet-agent 0.1.0")

    probe = in_root(scratch_root, "gpufleet-agent probe --json --gpu-probe none")
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout)
    assert {k: found[k] for k in ("probe", "error", "gpus")} == {
        "probe": "none", "error": None, "gpus": []
    }  # fmt: skip
    assert isinstance(found["preflight"], list)

    inventory = "/usr/share/gpufleet/examples/inventories/h100x8.yaml"
    static = in_root(
        scratch_root, f"gpufleet-agent probe --json --inventory {scratch_root}{inventory}"
    )
    assert static.returncode == 0, static.stderr
    assert len(json.loads(static.stdout)["gpus"]) == 8

    where = in_root(
        scratch_root,
        f"{VENV}/bin/python -c 'import sys, grpc, yaml; print(sys.prefix, grpc.__file__, "
        'yaml.__file__, any("dist-packages" in p for p in sys.path))\'',
    )
    prefix, grpc_file, yaml_file, system_path = where.stdout.split()
    assert prefix == VENV
    assert grpc_file.startswith(VENV) and yaml_file.startswith(VENV)
    assert system_path == "False", "system site-packages must not leak into the venv"


def test_installed_files_do_not_name_the_build_root(scratch_root: Path) -> None:
    venv = scratch_root / VENV.lstrip("/")
    assert (venv / "bin" / "gpufleet-hub").read_text().startswith(f"#!{VENV}/bin/python\n")
    assert "BUILDROOT" not in (venv / "pyvenv.cfg").read_text()
    assert (venv / "bin" / "python").resolve() == Path("/usr/bin/python3").resolve()


def test_shipped_config_files_load_in_the_installed_daemons(scratch_root: Path) -> None:
    etc = scratch_root / "etc" / "gpufleet"
    for command in (
        f"gpufleet-agent probe --gpu-probe none --config {etc}/agent.yaml",
        f"gpufleet-hub --config {etc}/hub.yaml --help",
        f"gpufleet-agent --config {etc}/agent.yaml --help",
        f"gpufleet-gateway --config {etc}/gateway.yaml --help",
    ):
        result = in_root(scratch_root, command)
        assert result.returncode == 0, f"{command}: {result.stderr}"
