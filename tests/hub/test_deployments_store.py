"""The model deployments each node runs, on a real database (SQLite, and PostgreSQL where
the tests have it): one row per node, replaced by the next switch, forgotten by a stop,
and what the migrations 0008 and 0009 build; and the model backend associations of
`switch-backend` (one per model)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect

from hub.store import migrate, sqlite_url
from hub.store.backends import Associated, BackendStore
from hub.store.db import make_engine
from hub.store.deployments import Deployed, DeploymentStore

T0 = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path, db_url: str | None) -> Iterator[DeploymentStore]:
    engine = make_engine(db_url or sqlite_url(tmp_path))
    migrate(engine)
    yield DeploymentStore(engine)
    engine.dispose()


def deployed(node: str, model: str = "tiny-a", gpus: tuple[int, ...] = (0, 1),
             port: int = 8000, at: datetime = T0) -> Deployed:  # fmt: skip
    return Deployed(node, model, "vllm", f"model-{model}", gpus, port, "d" * 64, at)


def test_a_node_runs_one_deployment_and_a_switch_replaces_it(store: DeploymentStore) -> None:
    assert store.get("gpu-a") is None and store.all() == []
    store.put(deployed("gpu-b"))
    store.put(deployed("gpu-a"))
    assert [d.node for d in store.all()] == ["gpu-a", "gpu-b"]  # by node
    assert store.get("gpu-a") == deployed("gpu-a")  # times come back in UTC
    later = deployed("gpu-a", "tiny-b", (), 9000, T0 + timedelta(minutes=5))
    store.put(later)
    assert store.get("gpu-a") == later
    assert store.all(["gpu-a"]) == [later]
    assert store.all([]) == []


def test_a_stop_forgets_only_its_node(store: DeploymentStore) -> None:
    store.put(deployed("gpu-a"))
    store.put(deployed("gpu-b"))
    store.forget("gpu-a")
    store.forget("gpu-z")  # nothing recorded: nothing to do
    assert [d.node for d in store.all()] == ["gpu-b"]


def test_the_migration_builds_the_table(store: DeploymentStore) -> None:
    columns = {c["name"] for c in inspect(store.engine).get_columns("model_deployment")}
    assert columns == {"node", "model", "engine", "project", "gpus", "port", "digest",
                       "started_at", "environment"}  # fmt: skip
    columns = {c["name"] for c in inspect(store.engine).get_columns("model_backend")}
    assert columns == {"model", "environment", "since"}


def test_a_llama_cpp_deployment_keeps_its_environment(store: DeploymentStore) -> None:
    found = Deployed("gpu-a", "tiny", "llama-cpp", "model-tiny", (), 8000, "d" * 64, T0,
                     "vulkan-0.3.36")  # fmt: skip
    store.put(found)
    assert store.get("gpu-a") == found
    store.put(deployed("gpu-a"))  # a vLLM model replaces it: no environment
    assert store.all() == [deployed("gpu-a")] and store.all()[0].environment == ""


def test_a_model_has_one_backend_association_until_forgotten(store: DeploymentStore) -> None:
    backends = BackendStore(store.engine)
    assert backends.get("tiny") is None and backends.all() == {}
    backends.put("tiny", "vulkan", T0)
    backends.put("other", "cpu", T0)
    backends.put("tiny", "cpu-0.3.36", T0 + timedelta(minutes=1))  # a second switch replaces it
    assert backends.get("tiny") == Associated("tiny", "cpu-0.3.36", T0 + timedelta(minutes=1))
    assert sorted(backends.all()) == ["other", "tiny"]
    backends.forget("tiny")
    backends.forget("never")
    assert list(backends.all()) == ["other"]


def test_removing_a_node_deletes_its_deployment(store: DeploymentStore) -> None:
    from hub.store import NodeHello, Store
    from hub.store.trust import TrustStore

    Store(store.engine).register(NodeHello("gpu-a", "id", "gpu-a", "127.0.0.1", "1", "none",
                                           ""), T0)  # fmt: skip
    store.put(deployed("gpu-a"))
    store.put(deployed("gpu-b"))
    TrustStore(store.engine).remove_node("gpu-a", "user/admin", T0)
    assert [d.node for d in store.all()] == ["gpu-b"]
