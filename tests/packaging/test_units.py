"""The systemd units as installed: systemd-analyze verify, and what they promise."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import need
from tests.packaging.conftest import in_root
from tests.support.procs import REPO

UNITS = REPO / "packaging" / "systemd"


def unit(name: str) -> dict[str, list[str]]:
    """Each key's values; comments skipped."""
    found: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_systemd_analyze_verify_passes_for_the_installed_units(scratch_root: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        need("systemd-analyze is missing: install Debian's package systemd")
    units = " ".join(
        f"{scratch_root}/usr/lib/systemd/system/gpufleet-{name}.service"
        for name in ("agent", "hub", "gateway")
    )
    result = in_root(scratch_root, f"systemd-analyze verify {units}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_units_are_notify_with_watchdog_restart_and_a_stop_timeout() -> None:
    for name in ("gpufleet-agent.service", "gpufleet-hub.service", "gpufleet-gateway.service"):
        keys = unit(name)
        assert keys["Type"] == ["notify"] and keys["NotifyAccess"] == ["main"]
        assert keys["Restart"] == ["on-failure"]
        assert int(keys["WatchdogSec"][0]) >= 10
        assert int(keys["TimeoutStopSec"][0]) > 10  # above the default grace of 10 s
        assert keys["StateDirectory"] == [name.removesuffix(".service")]
        daemon = name.removesuffix(".service")
        assert keys["ExecStart"] == [f"/usr/bin/{daemon}"]  # everything else: the config file
        config = (REPO / "packaging" / "config" / f"{daemon.split('-')[1]}.yaml").read_text()
        assert f"\nstate_dir: /var/lib/{daemon}\n" in config  # where StateDirectory= is


def test_hub_is_sandboxed_and_runs_as_its_own_user() -> None:
    keys = unit("gpufleet-hub.service")
    assert keys["User"] == ["gpufleet"]
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
    }
    for key, value in expected.items():
        assert keys[key] == [value], key
    sysusers = (REPO / "packaging" / "systemd" / "gpufleet-hub.sysusers").read_text()
    assert "u gpufleet - " in sysusers


def test_gateway_is_sandboxed_like_the_hub_under_a_user_of_its_own() -> None:
    keys, hub = unit("gpufleet-gateway.service"), unit("gpufleet-hub.service")
    assert keys["User"] == keys["Group"] == ["gpufleet-gateway"]  # not the hub's: its CA key
    assert keys["StateDirectoryMode"] == ["0700"]
    sandbox = {key: value for key, value in hub.items() if key not in (
        "Description", "Documentation", "After", "ExecStart", "TimeoutStartSec", "User",
        "Group", "StateDirectory", "StateDirectoryMode", "UMask")}  # fmt: skip
    for key, value in sandbox.items():
        assert keys.get(key) == value, key
    sysusers = (UNITS / "gpufleet-gateway.sysusers").read_text()
    assert "\nu gpufleet-gateway - " in sysusers
    preset = (UNITS / "90-gpufleet.preset").read_text().splitlines()
    assert "enable gpufleet-gateway.service" in preset


def test_agent_keeps_what_podman_and_the_gpus_need() -> None:
    keys = unit("gpufleet-agent.service")
    assert "User" not in keys  # rootful Podman, root-owned GPU device nodes
    kept_off = ["ProtectSystem", "PrivateDevices", "PrivateTmp", "ProtectHome"]
    kept_off += ["NoNewPrivileges", "DevicePolicy", "SystemCallFilter", "RestrictNamespaces"]
    for key in kept_off:
        assert key not in keys, f"{key} would reach the containers: see the unit's comments"
    text = (UNITS / "gpufleet-agent.service").read_text()
    for key in ("ProtectSystem", "NoNewPrivileges", "PrivateTmp", "ProtectHome"):
        assert f"# - {key}" in text or f" {key}=" in text, f"the unit says why {key} is not set"
