"""Hub side of GPU assignments: planning from stored state, the difference, each node's
override, the store's sets on a real database, and the generated gpu-assignments.yml."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from agent.compose import Completed
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


class Containers:
    """The node's podman (the process edge): `one` and `two` run; a recreated container serves
    its health URL unless it landed on a GPU it cannot use (`two` on GPU 0)."""

    def __init__(self) -> None:
        self.healthy = {"one": True, "two": True}
        self.recreated: list[tuple[str, str]] = []

    async def __call__(self, argv: list[str], env: Mapping[str, str], limit: float) -> Completed:
        if argv[:2] == ["podman", "ps"]:
            rows = [
                {"Id": f"id-{s}", "State": "running", "Labels": {"com.docker.compose.service": s}}
                for s in self.healthy
            ]
            return Completed(0, json.dumps(rows), "")
        if "--force-recreate" in argv:
            service, override = argv[-1], Path(argv[argv.index("-f", argv.index("-f") + 1) + 1])
            text = await asyncio.to_thread(override.read_text)
            env_of = yaml.safe_load(text)["services"][service]["environment"]
            gpu = env_of["CUDA_VISIBLE_DEVICES"]
            self.healthy[service] = (service, gpu) != ("two", "0")
            self.recreated.append((service, gpu))
        return Completed(0, "", "")


HEALTHY_PAIR = """x-gpufleet:
  description: two services that are healthy unless `two` runs on GPU 0
  use_case: tests
  services:
    one: {vram_gb: 1, drain: none, health: {url: "http://127.0.0.1:${PORT}/one", timeout: 1,
          interval: 0.1}}
    two: {vram_gb: 1, drain: none, health: {url: "http://127.0.0.1:${PORT}/two", timeout: 1,
          interval: 0.1}}
services:
  one: {image: x}
  two: {image: x}
"""


def test_apply_waits_until_recreated_services_are_healthy_and_rolls_back(tmp_path: Path) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import grpc

    from agent.compose import Podman
    from agent.link import AgentLink, Identity
    from agent.main import task_kinds
    from agent.probes.static import StaticProbe
    from agent.projects import ProjectStore
    from agent.tasks.context import TaskContext
    from agent.tasks.runner import TaskRunner
    from gpufleet.v1 import assign_pb2, assign_pb2_grpc, hub_pb2, hub_pb2_grpc
    from hub.server import HubConfig, HubServer

    containers = Containers()

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if containers.healthy.get(self.path[1:]) else 503)
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    web = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "pair.yaml").write_text(HEALTHY_PAIR)
    inventory = REPO / "configs" / "inventories" / "a5500-a400.yaml"
    env = {"PORT": str(web.server_address[1])}
    store = ProjectStore(tmp_path / "agent", "none")
    pair = load_configuration(configs / "pair.yaml")
    store.write("pair", pair.text, pair.digest)  # the node runs the configuration

    async def scenario() -> list[tuple[str, str, str]]:
        server = HubServer(HubConfig("127.0.0.1:0", tmp_path / "hub", heartbeat_interval=0.5,
                                     configs_dir=configs, insecure=True))  # fmt: skip
        await server.start()
        probe = StaticProbe(inventory)
        context = TaskContext.create(store, Podman("gpu-a", run=containers), probe, env)
        link = AgentLink(f"127.0.0.1:{server.port}", Identity("gpu-a", "id-a"), probe,
                         tasks=TaskRunner(task_kinds(), context))  # fmt: skip
        stop = asyncio.Event()
        agent = asyncio.create_task(link.run(stop))
        found: list[tuple[str, str, str]] = []
        try:
            await asyncio.wait_for(link.connected.wait(), 10)
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                assign = assign_pb2_grpc.AssignmentsStub(channel)
                ops = hub_pb2_grpc.HubStub(channel)

                async def pin(service: str, gpu: int) -> None:
                    for _ in range(100):  # until the node's GPUs are in the database
                        try:
                            await assign.Set(assign_pb2.SetAssignmentRequest(
                                service=service, node="gpu-a", gpus=[gpu]))  # fmt: skip
                            return
                        except grpc.aio.AioRpcError:
                            await asyncio.sleep(0.1)
                    raise AssertionError("the node's GPUs never reached the hub")

                async def apply() -> None:
                    ref = await assign.Apply(assign_pb2.ApplyAssignmentsRequest(
                        configuration="pair", strategy="manual"))  # fmt: skip
                    async for event in ops.WatchOperation(hub_pb2.WatchOperationRequest(id=ref.id)):
                        found.append((event.step, event.message, event.operation.status))

                await pin("one", 0)
                await pin("two", 1)
                await apply()
                await pin("two", 0)
                await apply()
        finally:
            stop.set()
            await asyncio.wait_for(agent, 10)
            await server.stop(grace=1)
        return found

    try:
        events = asyncio.run(scenario())
    finally:
        web.shutdown()
    done = [i for i, e in enumerate(events) if e[0] == "done"]
    first, second = events[: done[0] + 1], events[done[0] + 1 :]
    assert first[-1][2] == "succeeded", first
    assert any(s == "ready" and m.startswith("all 2 services healthy") for s, m, _ in first)
    assert second[-1][2] == "failed", second
    [result] = [m for s, m, _ in second if s == "result"]
    assert result.startswith("failed: ") and "service two not healthy" in result
    assert "previous GPU override back" in result
    assert [s for s, _, _ in second].count("rollback") == 1
    assert containers.recreated[-2:] == [("two", "0"), ("two", "1")]
    assert containers.healthy["two"]


SEED = load_configuration(REPO / "tests" / "fixtures" / "assign-configs" / "seed.yaml")
SEED_EMPTY = AssignmentSets("seed", (), (), (), None)


def reference_host() -> list[GpuSlot]:
    return [GpuSlot("gpu-a", 0, "NVIDIA RTX A5500", 24564), GpuSlot("gpu-a", 1, "A400", 4094)]


def test_preview_over_commits_by_default_and_not_in_strict_mode() -> None:
    found = procedure.preview(SEED, "vram_based", reference_host(), SEED_EMPTY)
    assert {a.service: a.gpus for a in found.assigned} == {
        "ai-llm": (0,), "ai-yolo26": (0,), "ai-florence": (0,), "ai-clip": (0,),
        "ai-enrichment": (1,)}  # fmt: skip
    assert "combined_over_capacity" in [w.kind for w in found.warnings]
    strict = procedure.preview(SEED, "vram_based", reference_host(), SEED_EMPTY, overcommit=False)
    assert [name for name, _ in strict.plan.unplaced] == ["ai-clip"]
    assert "combined_over_capacity" not in [w.kind for w in strict.warnings]


def test_foreign_vram_counts_processes_gpufleet_did_not_start() -> None:
    from hub.store.store import PlacementGpu, foreign_mb

    # [pid, MiB, managed]; a two-value row (before managed existed) is not managed
    assert foreign_mb([[1, 1000, 1], [2, 300, 0], [3, 200]]) == 500
    assert foreign_mb([]) == 0
    row = PlacementGpu("n", {}, 0, "A5500", "8.6", 24564, "ok", 19340)
    assert procedure.slots([row])[0].usable_mb == 24564 - 19340


def test_nodes_by_name_selector_or_connection() -> None:
    from hub.assign.targets import choose

    labels = {"a": {"role": "chat"}, "b": {"role": "vision"}, "c": {"role": "chat"}}
    assert choose([], [], labels, {"a", "b"}) == ["a", "b"]
    assert choose(["c", "a", "c"], [], labels, {"a"}) == ["c", "a"]
    assert choose([], ["role=chat"], labels, {"a", "b"}) == ["a"]  # connected ones only
    assert choose(["c"], ["role=chat"], labels, {"a"}) == ["c"]
    cases = [
        (["ghost"], [], "not_found", "unknown node ghost"),
        ([], ["bad key"], "invalid", "invalid label selector 'bad key'"),
        ([], ["role=none"], "invalid", "no connected node matches role=none"),
        (["b"], ["role=chat"], "invalid", "b does not match role=chat"),
    ]
    for names, selector, kind, message in cases:
        with pytest.raises(AssignError, match=message) as refused:
            choose(names, selector, labels, {"a", "b"})
        assert refused.value.kind == kind
