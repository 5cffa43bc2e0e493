"""Fixtures the end-to-end tests share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import need
from tests.support import podman
from tests.support.fleet import Fleet


@pytest.fixture(scope="session")
def image() -> str:
    """The locally built test image (no registry is reachable)."""
    try:
        return podman.build_image()
    except podman.PodmanMissing as exc:
        need(str(exc))
        raise


@pytest.fixture
def fleet(tmp_path: Path, image: str) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path)
    fleet.cluster.start_hub()
    try:
        yield fleet
    finally:
        fleet.cluster.close()
        podman.remove_projects(f"gf-{fleet.prefix}")
