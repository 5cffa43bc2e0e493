"""Hub side of GPU assignments: planning from stored state, the difference, each node's
override, the store's sets on a real database, and the generated gpu-assignments.yml."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from hub.assign import convert, mirror, procedure
from hub.assign.model import AssignError, ServiceTarget
from hub.configs import load_configuration
from hub.placement import GpuSlot
from hub.store import migrate, sqlite_url
from hub.store.assignments import Assigned, AssignmentSets, AssignmentStore
from hub.store.db import make_engine
from tests.support.procs import REPO

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
PAIR = load_configuration(REPO / "tests" / "fixtures" / "assign-configs" / "pair.yaml")
EMPTY = AssignmentSets("pair", (), (), (), None)


def gpus(lost: tuple[str, int] | None = None) -> list[GpuSlot]:
    return [GpuSlot(n, i, "g", 4096, 1.0, (n, i) == lost) for n in ("a", "b") for i in (0, 1)]


@pytest.fixture
def store(tmp_path: Path, db_url: str | None) -> Iterator[AssignmentStore]:
    engine = make_engine(db_url or sqlite_url(tmp_path))
    migrate(engine)
    yield AssignmentStore(engine)
    engine.dispose()


def test_preview_places_pins_first_and_diffs_with_what_is_in_force() -> None:
    pins = (Assigned("two", "b", (1,), 1.0, None, "manual"),)
    current = (Assigned("one", "a", (0,), 1.0, None, "balanced"),
               Assigned("two", "a", (1,), 1.0, None, "balanced"))  # fmt: skip
    found = procedure.preview(PAIR, "balanced", gpus(), AssignmentSets("pair", current, (), pins,
                                                                       T0))  # fmt: skip
    where = {a.service: (a.node, a.gpus) for a in found.assigned}
    assert where["two"] == ("b", (1,))
    assert [(c.service, c.change) for c in found.changes] == [
        (name, "moved") for name in sorted(where) if where[name] != ("a", (0,) if name == "one"
                                                                       else (1,))
    ]  # fmt: skip


def test_lost_gpu_moves_its_service_with_a_warning() -> None:
    current = (Assigned("one", "a", (0,), 1.0, None, "balanced"),)
    found = procedure.preview(PAIR, "balanced", gpus(lost=("a", 0)),
                              AssignmentSets("pair", current, (), (), T0))  # fmt: skip
    assert ("a", (0,)) not in {(a.node, a.gpus) for a in found.assigned}
    assert [w.kind for w in found.warnings if w.service == "one"] == ["gpu_lost_moved"]
    manual = procedure.preview(PAIR, "manual", gpus(lost=("a", 0)),
                               AssignmentSets("pair", current, (), (), T0))  # fmt: skip
    assert "gpu_lost_moved" in [w.kind for w in manual.warnings]


def test_bad_strategy_and_impossible_pins_are_refused_with_the_fix() -> None:
    with pytest.raises(AssignError, match="unknown strategy 'fastest'"):
        procedure.preview(PAIR, "fastest", gpus(), EMPTY)
    with pytest.raises(AssignError, match="no GPU 7") as missing:
        procedure.check_pin(PAIR, "one", "a", [7], [0, 1], None)
    assert "hubctl nodes show a" in str(missing.value)
    with pytest.raises(AssignError, match="no GPU service 'nope'"):
        procedure.check_pin(PAIR, "nope", "a", [0], [0, 1], None)
    with pytest.raises(AssignError, match="needs 1 GPU"):
        procedure.check_pin(PAIR, "one", "a", [0, 1], [0, 1], None)
    with pytest.raises(AssignError, match="more than 0 GB"):
        procedure.check_pin(PAIR, "one", "a", [0], [0, 1], 0.0)


def test_each_node_gets_every_gpu_service_here_or_not() -> None:
    assigned = [Assigned("one", "a", (1,), 1.0, 0.5, "manual")]
    overrides = procedure.overrides(PAIR, assigned, ["b", "a"])
    assert [o.node for o in overrides] == ["a", "b"]
    assert overrides[0].services == (ServiceTarget("one", True, (1,), 0.5),
                                     ServiceTarget("two", False))  # fmt: skip
    assert all(not t.here for t in overrides[1].services)
    message = convert.override_task(overrides[0])
    assert message.services[0].vram_budget_gb == 0.5 and not message.services[1].here


def test_sets_keep_the_previous_and_rollback_swaps(store: AssignmentStore) -> None:
    first = [Assigned("one", "a", (0,), 1.0, None, "balanced")]
    second = [Assigned("one", "b", (1,), 1.0, 0.5, "balanced")]
    store.put_in_force("pair", first, T0)
    store.put_in_force("pair", second, T0 + timedelta(minutes=1))
    sets = store.one("pair")
    assert (sets.current, sets.previous) == (tuple(second), tuple(first))
    assert sets.strategy == "balanced" and sets.applied == T0 + timedelta(minutes=1)
    assert store.swap("pair", T0 + timedelta(minutes=2))
    sets = store.one("pair")
    assert (sets.current, sets.previous) == (tuple(first), tuple(second))
    assert not store.swap("other", T0)
    store.pin("pair", Assigned("two", "a", (1,), 1.0, None, "manual"), T0)
    store.pin("pair", Assigned("two", "b", (0,), 1.0, None, "manual"), T0)
    assert [(p.node, p.gpus) for p in store.one("pair").pins] == [("b", (0,))]
    assert store.unpin("pair", "two") and not store.unpin("pair", "two")
    assert [s.configuration for s in store.sets()] == ["pair"]


def test_mirror_is_generated_and_readable(tmp_path: Path) -> None:
    sets = [AssignmentSets("pair", (Assigned("one", "a", (0,), 1.0, 3.5, "balanced"),), (), (),
                           T0)]  # fmt: skip
    path = mirror.write(tmp_path, sets, T0)
    text = path.read_text()
    assert path.name == "gpu-assignments.yml" and "do not edit" in text.splitlines()[0]
    data = yaml.safe_load(text)
    assert data["configurations"]["pair"]["assignments"]["one"] == {
        "node": "a", "gpus": [0], "vram_gb": 1.0, "vram_budget": 3.5}  # fmt: skip
