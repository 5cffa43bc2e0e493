"""Node switch states: only the table's moves, checked where the store sets them."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gpufleet.v1 import agent_link_pb2 as pb
from hub.ops.events import ProgressLog
from hub.ops.running import running_from_proto
from hub.states import (
    UNKNOWN,
    InvalidTransition,
    NodeState,
    Running,
    Service,
    after_cancel,
    check,
    observed,
)
from hub.store import Database, NodeHello, Store, migrate, sqlite_url
from hub.store.operations import OperationStore

S = NodeState
NOW = datetime(2026, 11, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("before", "after"),
    [(S.STOPPED, S.LOADING), (S.STOPPED, S.DRAINING), (S.READY, S.LOADING),
     (S.SWITCHING, S.DRAINING), (S.SWITCHING, S.READY)],
)  # fmt: skip
def test_moves_outside_the_table_are_refused(before: NodeState, after: NodeState) -> None:
    with pytest.raises(InvalidTransition, match=f"from {before} to {after}"):
        check(before, after)


def test_a_loading_node_may_be_drained_switched_or_stopped() -> None:
    # Health reports put a node in loading while its checks have not passed yet.
    for after in (S.DRAINING, S.SWITCHING, S.STOPPED, S.READY, S.FAILED):
        check(S.LOADING, after)


def test_every_state_may_stay_where_it_is_and_the_switch_path_is_allowed() -> None:
    for state in S:
        check(state, state)
    path = [S.STOPPED, S.SWITCHING, S.LOADING, S.READY, S.DRAINING, S.SWITCHING, S.LOADING,
            S.FAILED, S.SWITCHING, S.STOPPED]  # fmt: skip
    for before, after in itertools.pairwise(path):
        check(before, after)


def test_the_store_refuses_an_illegal_move_but_takes_an_observation(tmp_path: Path) -> None:
    db = Database(sqlite_url(tmp_path))
    try:
        migrate(db.engine)
        Store(db.engine).register(NodeHello("gpu-a", "id", "h", "a", "0", "none", ""), NOW)
        ops = OperationStore(db.engine)
        with pytest.raises(InvalidTransition):
            ops.set_state("gpu-a", S.LOADING, "beta", NOW)
        ops.set_state("gpu-a", S.READY, "beta", NOW, observed=True)
        ops.set_state("gpu-a", S.DRAINING, "beta", NOW)
        assert [(t.from_state, t.to_state) for t in ops.transitions("gpu-a")] == [
            ("ready", "draining"),
            ("stopped", "ready"),
        ]
    finally:
        db.close()


def runs(*services: Service) -> Running:
    return Running("beta", "d", all(s.state == "running" for s in services), services)


def test_observed_state_comes_from_health_not_from_containers_that_exist() -> None:
    assert observed(None) == (S.STOPPED, "", "")
    assert observed(UNKNOWN)[0] == S.FAILED
    healthy = Service("web", "running", "healthy")
    assert observed(runs(healthy, Service("api", "running", "healthy"))) == (S.READY, "beta", "")
    # Containers up but the check answers 404 within its timeout: loading, saying why.
    loading = Service("api", "running", "unchecked", "not healthy yet: /health gave HTTP 404")
    assert observed(runs(healthy, loading)) == (
        S.LOADING, "beta", "waiting for health checks: api: not healthy yet: /health gave HTTP 404",
    )  # fmt: skip
    sick = Service("api", "running", "unhealthy", "http://127.0.0.1:1/health gave HTTP 404")
    assert observed(runs(healthy, sick)) == (
        S.FAILED, "beta", "unhealthy: api: http://127.0.0.1:1/health gave HTTP 404",
    )  # fmt: skip
    exited = Service("api", "exited", "unhealthy", "its container is exited")
    assert observed(runs(healthy, exited)) == (
        S.FAILED, "beta", "not every container is running (api is exited)",
    )  # fmt: skip
    # Health never told (a task's result, an agent without a monitor): never ready.
    assert observed(runs(Service("web", "running")))[0] == S.LOADING
    assert observed(Running("beta", "d", True))[0] == S.LOADING
    assert observed(Running("beta", "d", False))[0] == S.FAILED


def test_health_from_the_wire_is_bounded_and_unknown_words_are_unchecked() -> None:
    project = pb.RunningProject(name="beta", digest="d", services=[
        pb.ServiceStatus(name="web", state="running", health="fine", health_message="x" * 5000),
        pb.ServiceStatus(name="api", state="running", health="healthy"),
    ])  # fmt: skip
    found = running_from_proto(project)
    assert [(s.name, s.health) for s in found.services] == [("web", "unchecked"),
                                                             ("api", "healthy")]  # fmt: skip
    assert len(found.services[0].message) == 300
    assert observed(found)[0] == S.LOADING


def test_state_after_a_cancel_is_what_runs_never_assumed_healthy() -> None:
    assert after_cancel(None, "stop") == (S.STOPPED, "", "cancelled during stop")
    assert after_cancel(Running("alpha", "d", True), "drain")[0] == S.READY
    state, config, note = after_cancel(Running("beta", "d", True), "start")
    assert (state, config) == (S.FAILED, "beta")
    assert "not checked healthy" in note


def test_progress_keeps_the_last_events_of_each_task_and_counts_the_rest() -> None:
    log = ProgressLog(kept=3)
    deleted = [log.add("gpu-a", "t1", seq) for seq in range(1, 7)]
    assert deleted == [None, None, None, 1, 2, 3]
    assert log.add("gpu-a", "t2", 7) is None  # another task has its own budget
    assert log.add("gpu-b", "t1", 8) is None
    assert log.finish_node("gpu-a") == 3
    assert log.finish_node("gpu-b") == 0
