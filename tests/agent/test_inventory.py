from __future__ import annotations

from pathlib import Path

import pytest

from agent.probes import InventoryError, StaticProbe, load_inventory, make_probe
from tests.support.procs import INVENTORIES


@pytest.mark.parametrize("name", ["a5500-a400.yaml", "mi50x2.yaml", "h100x8.yaml"])
def test_shipped_inventories_load(name: str) -> None:
    gpus = load_inventory(INVENTORIES / name)
    assert [g.index for g in gpus] == list(range(len(gpus)))
    assert all(0 <= g.memory_used_mb <= g.memory_total_mb for g in gpus)


def test_seed_host() -> None:
    a5500, a400 = load_inventory(INVENTORIES / "a5500-a400.yaml")
    assert (a5500.name, a5500.memory_total_mb, a5500.compute_capability) == (
        "NVIDIA RTX A5500",
        24564,
        "8.6",
    )
    assert a400.memory_total_mb == 4094


GOOD = "index: 0, uuid: u, name: n, vendor: amd, memory_total_mb: 10"


def one(fields: str) -> str:
    return f"gpus:\n  - {{{fields}}}"


BAD = {
    "gpus: [1, 2]": "gpus[0]: expected a mapping",
    one("index: 0, uuid: u, name: n, vendor: nvidia"): "gpus[0]: missing memory_total_mb",
    one(GOOD.replace("amd", "intel")): "vendor must be one of nvidia, amd, other",
    one(GOOD + ", memory_used_mb: 11"): "memory_used_mb (11) exceeds memory_total_mb (10)",
    one(GOOD.replace("index: 0", "index: -1")): "index must be a whole number >= 0",
    one(GOOD + ", vram: 3"): "unknown field vram",
    one(GOOD) + f"\n  - {{{GOOD}}}": "index 0 is listed twice",
    "gpus: {a: 1}": "expected a mapping with a list under 'gpus'",
    "gpus: [": "invalid YAML",
}


@pytest.mark.parametrize("text", sorted(BAD))
def test_bad_inventory_names_the_problem(tmp_path: Path, text: str) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(text)
    with pytest.raises(InventoryError, match=r"inventory .*inv\.yaml") as raised:
        load_inventory(path)
    assert BAD[text] in str(raised.value)


def test_missing_file_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="cannot read it"):
        make_probe("static", tmp_path / "nope.yaml")
    (tmp_path / "empty.yaml").write_text("")
    assert load_inventory(tmp_path / "empty.yaml") == ()


def test_static_probe_reports_a_file_broken_after_start(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text((INVENTORIES / "mi50x2.yaml").read_text())
    probe = StaticProbe(path)
    assert len(probe.inventory().gpus) == 2
    path.write_text("gpus: [")
    result = probe.inventory()
    assert result.gpus == () and "invalid YAML" in result.error
