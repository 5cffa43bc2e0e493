"""The committed protobuf stubs are exactly what scripts/gen_proto.py writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.procs import REPO

STUBS = REPO / "proto" / "gpufleet" / "v1"


def test_committed_stubs_are_fresh(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "scripts/gen_proto.py", "--out", str(tmp_path)], check=True, cwd=REPO
    )
    generated = sorted(
        p.relative_to(tmp_path / "gpufleet" / "v1")
        for p in (tmp_path / "gpufleet" / "v1").glob("*_pb2*")
    )
    committed = sorted(p.relative_to(STUBS) for p in STUBS.glob("*_pb2*"))
    assert generated == committed, "stub files differ: run python scripts/gen_proto.py"
    stale = [
        str(name)
        for name in generated
        if (tmp_path / "gpufleet" / "v1" / name).read_bytes() != (STUBS / name).read_bytes()
    ]
    assert not stale, f"stale stubs {stale}: run python scripts/gen_proto.py and commit"
