"""What the hub does not load until it is used: each is megabytes of every hub's memory. The
first use of each is covered where it is used (tests/hub/test_registry_pull.py pulls through
huggingface_hub's API)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.procs import REPO

LAZY = (
    "huggingface_hub.hf_api",  # about 9 MiB with its HTTP stack: the first pull loads it
    "huggingface_hub.file_download",
    "trio",
)


def test_the_hub_starts_without_the_hugging_face_api() -> None:
    script = (
        "import sys, hub.main, hub.server; "
        f"print(','.join(m for m in {LAZY!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": f"{REPO / 'proto'}:{REPO}"},
    )  # fmt: skip
    assert done.stdout.strip() == ""
