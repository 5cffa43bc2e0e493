"""The agent suite's session fixtures: one real CPU llama-cpp-python environment build
(tests/support/envs.py), reused by every test that needs a built environment."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import need
from tests.support.envs import BUILD_TOOLS, ROOT_ENV, BuiltEnv, build_cpu_env, missing


@pytest.fixture(scope="session")
def cpu_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuiltEnv]:
    if lacking := missing(BUILD_TOOLS):
        need(f"a llama-cpp-python build needs a compiler and cmake: {lacking}")
    root = (
        Path(os.environ[ROOT_ENV]) if os.environ.get(ROOT_ENV) else tmp_path_factory.mktemp("envs")
    )
    built = build_cpu_env(root)
    try:
        yield built
    finally:
        built.server.close()
