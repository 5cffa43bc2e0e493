"""`hubctl up --demo`'s defaults and prerequisites (cli.demo, cli.demo_image), directly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cli import demo, demo_image
from cli.up import UpConfig, agent_command, hub_command
from tests.conftest import need


def config(**changes: object) -> UpConfig:
    base = UpConfig("127.0.0.1:7443", Path("/s"), "gpu-a", "", None, 5.0, demo=True)
    return UpConfig(**{**base.__dict__, **changes})  # type: ignore[arg-type]


def test_demo_defaults_fill_what_the_user_left_out() -> None:
    got = demo.with_demo(config())
    assert (got.configs, got.inventory, got.gpu_runtime) == (
        demo.DEMO_CONFIGS, demo.DEMO_INVENTORY, "none"
    )  # fmt: skip
    assert got.configs is not None
    assert {p.stem for p in got.configs.glob("*.yaml")} == {"demo-chat", "demo-vision"}
    # What the user gave stays; a probe other than static means no demo inventory.
    mine = demo.with_demo(config(configs=Path("/c"), gpu_runtime="cdi", gpu_probe="nvml"))
    assert (mine.configs, mine.inventory, mine.gpu_runtime) == (Path("/c"), None, "cdi")
    argv = agent_command(got)
    assert argv[argv.index("--inventory") + 1] == str(demo.DEMO_INVENTORY)
    assert not any("token" in a for a in argv)  # the join token goes in the environment
    assert argv[argv.index("--gpu-runtime") + 1] == "none"
    assert hub_command(got)[hub_command(got).index("--configs") + 1] == str(demo.DEMO_CONFIGS)


def test_options_reach_the_commands_in_order() -> None:
    got = config(demo=False, env=("A=1", "B=x=y"), http="127.0.0.1:9464", gpu_probe="amd")
    agent = agent_command(got)
    assert agent[agent.index("--gpu-probe") + 1] == "amd" and "--gpu-runtime" not in agent
    assert [agent[i + 1] for i, a in enumerate(agent) if a == "--env"] == ["A=1", "B=x=y"]
    hub = hub_command(got)
    assert hub[hub.index("--http") + 1] == "127.0.0.1:9464" and "--configs" not in hub


def test_demo_state_is_apart_from_a_real_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", "/x")
    assert (demo.state_dir(True), demo.state_dir(False)) == (
        Path("/x/gpufleet-demo"), Path("/x/gpufleet")
    )  # fmt: skip


def test_banner_hint_names_the_demo_walk() -> None:
    assert "hubctl switch demo-chat --node gpu-a" in demo.banner_hint(demo.with_demo(config()))
    assert "demo" not in demo.banner_hint(config(demo=False))


def test_prerequisites_name_the_debian_package(tmp_path: Path) -> None:
    def found(name: str) -> str:
        return f"/usr/bin/{name}"

    with pytest.raises(demo_image.DemoUnavailable, match=r"podman runc netavark$"):
        demo_image.check_prerequisites(lambda _: None)
    for busybox in (tmp_path / "none", Path(sys.executable)):  # missing, dynamically linked
        with pytest.raises(demo_image.DemoUnavailable, match=r"package busybox-static$"):
            demo_image.check_prerequisites(found, busybox)
    try:
        demo_image.check_prerequisites(found)
    except demo_image.DemoUnavailable as exc:
        need(str(exc))


def test_content_hash_follows_busybox() -> None:
    assert demo_image.content_hash(b"a") == demo_image.content_hash(b"a")
    assert demo_image.content_hash(b"a") != demo_image.content_hash(b"b")


def test_a_hung_podman_is_one_line_not_a_traceback() -> None:
    try:
        demo_image.check_prerequisites()
    except demo_image.DemoUnavailable as exc:
        need(str(exc))

    def hung(argv: list[str]) -> subprocess.CompletedProcess[str]:
        raise subprocess.TimeoutExpired(["podman", *argv], 300)

    with pytest.raises(demo_image.DemoUnavailable) as caught:
        demo_image.ensure_image(hung, lambda _: None)
    assert str(caught.value) == (
        '`podman image inspect --format {{index .Labels "io.gpufleet.demo.hash"}} '
        f"{demo_image.IMAGE}` took more than 300 s: is podman hung? "
        "(`podman info` should answer at once)"
    )
