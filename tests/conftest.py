"""Shared fixtures. Under CI=true nothing an issue requires may skip: a missing system
package fails the run instead."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.envs import BUILD_TOOLS, ROOT_ENV, BuiltEnv, build_cpu_env, missing
from tests.support.postgres import PostgresMissing, PostgresServer
from tests.support.procs import Cluster

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
_databases = itertools.count()


def need(reason: str) -> None:
    """A prerequisite is missing: fail under CI, skip with the package to install elsewhere."""
    if IN_CI:
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def hubctl_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """hubctl (and `hubctl up`) read and write this test's own config, never ~/.config."""
    path = tmp_path / "hubctl-default.yaml"
    monkeypatch.setenv("GPUFLEET_CONFIG", str(path))
    return path


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    try:
        server = PostgresServer.start()
    except PostgresMissing as exc:
        need(str(exc))
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str | None:
    """None means the hub's default: a SQLite file in its state dir."""
    if request.param == "sqlite":
        return None
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database(f"gpufleet_test_{next(_databases)}")


@pytest.fixture
def cluster(tmp_path: Path, db_url: str | None) -> Iterator[Cluster]:
    fleet = Cluster(tmp_path, db_url)
    fleet.start_hub()
    try:
        yield fleet
    except BaseException:
        raise
    finally:
        fleet.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """On failure, attach the daemons' logs to the report."""
    report = yield
    for value in getattr(item, "funcargs", {}).values():
        fleet = value if isinstance(value, Cluster) else getattr(value, "cluster", None)
        if report.failed and isinstance(fleet, Cluster):
            report.sections.append(("daemon logs", fleet.logs()))
            break
    return report


@pytest.fixture(scope="session")
def cpu_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuiltEnv]:
    """One real CPU llama-cpp-python environment per test session (tests/support/envs.py): a
    compile of 5-15 minutes the first time, reused by every suite that needs a built
    environment or its wheel."""
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
