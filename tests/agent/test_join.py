"""The agent's join helpers: which hub, which start hint."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pytest

from agent.join import read_token, remember_hub, resolve_hub, start_hint, unit_installed


def test_the_hub_by_precedence(tmp_path: Path) -> None:
    assert resolve_hub(None, tmp_path, {}) == "localhost:7443"
    assert resolve_hub(None, tmp_path, {"GPUFLEET_HUB": "env:1"}) == "env:1"
    remember_hub(tmp_path, "hub.example:7443")
    assert resolve_hub(None, tmp_path, {}) == "hub.example:7443"
    # The state dir's certificate is the remembered hub's: hubctl's variable does not move it.
    assert resolve_hub(None, tmp_path, {"GPUFLEET_HUB": "env:1"}) == "hub.example:7443"
    assert resolve_hub("flag:2", tmp_path, {"GPUFLEET_HUB": "env:1"}) == "flag:2"


@pytest.mark.parametrize("content", [b"\xff\xfe", b"evil host:7443\n", b"a:1\nb:2\n", b"nope\n"])
def test_a_remembered_hub_file_that_is_not_one_address_is_ignored(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "hub").write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="agent.join"):
        assert resolve_hub(None, tmp_path, {}) == "localhost:7443"
    [said] = [r.getMessage() for r in caplog.records]
    assert said.startswith(f"ignoring {tmp_path / 'hub'}")


def test_a_typed_token_beats_a_token_file_from_the_config(tmp_path: Path) -> None:
    stale = tmp_path / "stale"
    stale.write_text("gft1.old\n")
    args = argparse.Namespace(token="gft1.typed", token_file=str(stale))
    assert read_token(args, {}, argv=["join", "--token", "gft1.typed"]) == "gft1.typed"
    assert read_token(args, {}, argv=["join", "--token-file", str(stale)]) == "gft1.old"
    assert read_token(args, {}, argv=["join"]) == "gft1.old"  # both from the config file


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
