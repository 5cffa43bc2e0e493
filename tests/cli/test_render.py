from __future__ import annotations

import io
from datetime import UTC, datetime

from cli.render import Stream, ago, gb, vram_bar


def test_vram_bar() -> None:
    assert vram_bar(19304, 24564) == "█████████░░░ 18.9/24 GiB"
    assert vram_bar(0, 4094) == "░░░░░░░░░░░░ 0/4 GiB"
    assert vram_bar(81559, 81559) == "████████████ 79.6/79.6 GiB"
    assert vram_bar(5, 0) == "░░░░░░░░░░░░ 0/0 GiB"


def test_gb_and_ago() -> None:
    assert (gb(1024), gb(1536), gb(312)) == ("1", "1.5", "0.3")
    now = datetime(2026, 11, 24, 12, 0, 30, tzinfo=UTC)
    assert ago("2026-11-24T12:00:00Z", now) == "30s ago"
    assert ago("2026-11-24T10:00:00Z", now) == "2h ago"
    assert ago(None, now) == "never"


def test_stream_pads_by_terminal_cells() -> None:
    """Columns line up by the cells a terminal draws: a wide character takes two, a bar's
    block one; colour codes wrap the text and never count."""
    out = io.StringIO()
    stream = Stream(["NAME", "VRAM", "NOTE"], out, color=False)
    stream.page([["gpu-node", vram_bar(0, 4094), "x"], ["节点", ("ok", "green"), "y"]])
    lines = out.getvalue().splitlines()
    assert lines[1] == " gpu-node  ░░░░░░░░░░░░ 0/4 GiB  x"
    assert lines[2] == " 节点      ok                    y"
    colored = io.StringIO()
    Stream(["NAME", "NOTE"], colored, color=True).page([[("ok", "green"), "y"]])
    assert colored.getvalue().splitlines()[1] == " \x1b[32mok\x1b[0m    y"
