"""The pure parts: the router's choice and cooldown, the table's lookups and conversion,
the --routes file, the activity counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.activity import ActivityLog
from gateway.follow import RoutesFileError, load_routes, parse_routes
from gateway.router import Router
from gateway.table import Model, Replica, Table, from_proto
from gpufleet.v1 import gateway_pb2


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def replicas(*endpoints: str, healthy: bool = True) -> list[Replica]:
    return [Replica("m", f"n{i}", e, healthy) for i, e in enumerate(endpoints)]


def test_least_in_flight_ties_by_order() -> None:
    router = Router(Clock())
    a, b, c = replicas("a", "b", "c")
    assert router.choose([a, b, c]) == a
    router.begin("a")
    assert router.choose([a, b, c]) == b
    router.begin("b")
    router.begin("c")
    router.begin("c")
    assert router.choose([a, b, c]) == a
    router.end("a")
    assert router.choose([a, b, c], exclude={"a"}) == b
    assert router.choose(replicas("x", healthy=False)) is None
    assert router.choose([Replica("m", "n", "", True)]) is None


def test_three_failures_in_a_row_cool_a_replica_for_five_seconds() -> None:
    clock = Clock()
    router = Router(clock)
    a, b = replicas("a", "b")
    router.failed("a")
    router.failed("a")
    router.succeeded("a", 0.01)  # a success resets the count
    router.failed("a")
    router.failed("a")
    assert router.choose([a, b]) == a
    router.failed("a")
    assert router.choose([a, b]) == b
    assert router.choose([a]) is None
    assert router.cooldown_left([a]) == pytest.approx(5.0)
    clock.now += 4.9
    assert router.choose([a]) is None
    clock.now += 0.2
    assert router.choose([a, b]) == a


def test_response_time_is_an_ewma() -> None:
    router = Router(Clock())
    router.succeeded("a", 0.100)
    assert router.stats("a").response_ms == pytest.approx(100.0)
    router.succeeded("a", 0.200)
    assert router.stats("a").response_ms == pytest.approx(120.0)


def test_lookup_by_name_alias_and_served_name_and_close_names() -> None:
    tiny = Model("tiny", aliases=("t",), served_model_name="tiny-q4.gguf")
    other = Model("t", served_model_name="x")  # its name wins over tiny's alias
    table = Table(1, (tiny, other))
    assert table.lookup("tiny") == tiny and table.lookup("tiny-q4.gguf") == tiny
    assert table.lookup("t") == other and table.lookup("x") == other
    assert table.lookup("nope") is None
    assert table.close_names("tinny")[0] == "tiny"


def test_from_proto() -> None:
    message = gateway_pb2.RouteTable(generation=3, errors=["bad.yaml: x"])
    message.models.add(name="tiny", aliases=["t"], state="loading", load_timeout_s=0)
    message.replicas.add(model="tiny", node="a", endpoint="http://a:1", healthy=True)
    message.keys.add(name="k", sha256="AB" * 32, models=["tiny"])
    table = from_proto(message)
    assert table.generation == 3 and table.errors == ("bad.yaml: x",)
    assert table.lookup("t") == Model("tiny", ("t",), state="loading")  # default load timeout
    assert table.routable("tiny") == (Replica("tiny", "a", "http://a:1", True, ""),)
    key = table.key("ab" * 32)
    assert key is not None and key.allows("tiny") and not key.allows("big")


def test_routes_file(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(
        "models:\n"
        "  - name: tiny\n    aliases: [t]\n    served_model_name: x\n"
        "    endpoints: [http://127.0.0.1:9001/, http://127.0.0.1:9002]\n"
        "  - name: idle\n"
    )
    table = load_routes(path)
    assert [r.endpoint for r in table.routable("tiny")] == [
        "http://127.0.0.1:9001", "http://127.0.0.1:9002",
    ]  # fmt: skip
    assert table.lookup("x") == table.lookup("t") == Model("tiny", ("t",), "x")
    idle = table.lookup("idle")
    assert idle is not None and idle.state == "stopped"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "expected a mapping with a list `models:`"),
        ({"models": [{"aliases": ["t"]}]}, "models[1]: `name:` is required"),
        ({"models": [{"name": "a"}, {"name": "a"}]}, "model 'a' is defined twice"),
        ({"models": [{"name": "a", "endpoint": "x"}]}, "unknown field 'endpoint'"),
        ({"models": [{"name": "a", "endpoints": ["127.0.0.1:1"]}]}, "is not http://HOST:PORT"),
        ({"models": [{"name": "a", "aliases": "t"}]}, "aliases must be a list of strings"),
    ],
)
def test_bad_routes_files_say_what_is_wrong(data: object, message: str) -> None:
    with pytest.raises(RoutesFileError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_routes(data)


def test_unreadable_routes_file(tmp_path: Path) -> None:
    with pytest.raises(RoutesFileError, match="cannot read --routes"):
        load_routes(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("models: [\n")
    with pytest.raises(RoutesFileError, match="is not YAML"):
        load_routes(tmp_path / "bad.yaml")


def test_activity_counts_and_last_finished() -> None:
    clock = Clock()
    activity = ActivityLog(clock)
    activity.begin("tiny")
    assert activity.woken.is_set()  # 0 -> 1 in flight: report at once
    activity.woken.clear()
    activity.begin("tiny")
    assert not activity.woken.is_set()
    clock.now = 200.0
    activity.finish("tiny")
    (tiny,) = activity.snapshot()
    assert (tiny.in_flight, tiny.requests, tiny.last_finished) == (1, 2, 200.0)


def test_in_flight_over_every_gateway() -> None:
    message = gateway_pb2.RouteTable(generation=1)
    message.replicas.add(model="m", node="a", endpoint="http://a:1", healthy=True, in_flight=3)
    message.replicas.add(model="m", node="b", endpoint="http://b:1", healthy=True, in_flight=1)
    a, b = from_proto(message).replicas
    assert (a.in_flight, b.in_flight) == (3, 1)
    activity = ActivityLog(Clock())
    router = Router(Clock(), reported=activity.reported)
    # Other gateways have 3 at a and 1 at b: b is the less busy one.
    assert router.choose([a, b]) == b
    # This gateway sends 2 to b and tells the hub; the table then counts them at b too.
    for _ in range(2):
        router.begin("http://b:1")
        activity.sent("m", "http://b:1")
    report = activity.snapshot()
    assert report[0].replicas == {"http://b:1": 2}
    activity.delivered(report)
    b_now = Replica("m", "b", "http://b:1", True, in_flight=3)  # 1 other + our 2
    assert router.others_in_flight(b_now) == 1
    assert router.cluster_in_flight(b_now) == 3
    assert router.choose([a, b_now]) == a  # 3 against 3: ties by order
    router.end("http://b:1")
    activity.returned("m", "http://b:1")
    assert router.choose([a, b_now]) == b_now  # 2 against 3
    assert activity.snapshot()[0].replicas == {"http://b:1": 1}
