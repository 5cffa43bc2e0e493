"""What the hub does not load until it is used: each is megabytes of every hub's memory. The
first use of each is covered where it is used (tests/hub/test_registry_pull.py pulls through
huggingface_hub's API)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory

from hub.store.db import HEAD, MIGRATIONS
from tests.support.procs import REPO

LAZY = (
    "huggingface_hub.hf_api",  # about 9 MiB with its HTTP stack: the first pull loads it
    "huggingface_hub.file_download",
    "huggingface_hub",  # with httpx2 about 1.3 MiB more
    "httpx2",
    "trio",
    "alembic",  # with mako and pygments about 13 MiB: loaded only when the schema is behind
    "mako",
)


def test_the_hub_starts_without_the_hugging_face_api_and_alembic() -> None:
    script = (
        "import sys, hub.main, hub.server; "
        f"print(','.join(m for m in {LAZY!r} if m in sys.modules))"
    )
    assert run(script) == ""


def run(script: str, **env: str) -> str:
    """`script`'s output in a fresh interpreter (with `env` added to the environment)."""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": f"{REPO / 'proto'}:{REPO}", **env},
    )  # fmt: skip
    return done.stdout.strip()


def test_a_database_at_head_is_not_handed_to_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    migrate = (
        f"import sys; from hub.store.db import make_engine, migrate; migrate(make_engine({url!r}))"
    )
    assert run(f"{migrate}; print('alembic' in sys.modules)") == "True"  # a new database
    assert run(f"{migrate}; print('alembic' in sys.modules)") == "False"  # already at head


def test_head_is_the_newest_migration() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD
