"""The agent's join helpers: which hub, which start hint."""

from __future__ import annotations

from pathlib import Path

from agent.join import remember_hub, resolve_hub, start_hint, unit_installed


def test_the_hub_by_precedence(tmp_path: Path) -> None:
    assert resolve_hub(None, tmp_path, {}) == "localhost:7443"
    remember_hub(tmp_path, "hub.example:7443")
    assert resolve_hub(None, tmp_path, {}) == "hub.example:7443"
    assert resolve_hub(None, tmp_path, {"GPUFLEET_HUB": "env:1"}) == "env:1"
    assert resolve_hub("flag:2", tmp_path, {"GPUFLEET_HUB": "env:1"}) == "flag:2"


def test_the_start_hint_follows_the_unit(tmp_path: Path) -> None:
    assert not unit_installed([str(tmp_path)])
    (tmp_path / "gpufleet-agent.service").write_text("[Unit]\n")
    assert unit_installed([str(tmp_path / "nope"), str(tmp_path)])
    assert start_hint(Path("/srv/a b"), unit=False) == (
        "start the agent: gpufleet-agent --state-dir '/srv/a b'"
    )
    assert (
        start_hint(Path("/srv/a"), unit=True) == "start the agent: systemctl start gpufleet-agent"
    )
