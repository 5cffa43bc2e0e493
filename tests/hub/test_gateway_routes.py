"""The gateway's routing table, from what the hub knows at one moment (hub.gateway.routes):
which replicas are healthy, each model's state and message, and the table as it goes out."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from gpufleet.v1 import gateway_pb2
from hub.gateway import convert, routes
from hub.gateway.routes import Replica, Starting
from hub.models.load import parse_models
from hub.models.running import Running
from hub.models.schema import Model
from hub.store.keys import KeyHash

T0 = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)


def model(name: str, **extra: object) -> Model:
    data = {"name": name, "engine": "llama-cpp", "source": {"path": f"/m/{name}.gguf"},
            "llama_cpp": {"backend": "cpu"}, **extra}  # fmt: skip
    return parse_models(yaml.safe_dump(data), Path(f"{name}.yaml"))[0]


def runs(
    node: str, name: str, state: str = "ready", endpoint: str = "", message: str = ""
) -> Running:
    where = endpoint if endpoint or state == "down" else f"http://{node}:8000"
    return Running(node, name, "llama-cpp", (), state, T0, where, message, f"model-{name}")


CHAT = model("chat", aliases=["c"], served_model_name="chat-served",
             gateway={"idle_ttl": 60, "load_timeout": 90})  # fmt: skip
CODE = model("code")


KEYS = [KeyHash("b", "22", ()), KeyHash("a", "11", ("chat",))]


def table(found: list[Running], serving: dict[str, str],
          starting: dict[str, Starting] | None = None,
          failures: dict[str, str] | None = None) -> routes.RouteTable:  # fmt: skip
    return routes.build([CODE, CHAT], ["bad.yaml: broken"], found, serving, starting or {},
                        failures or {}, KEYS)  # fmt: skip


def state(found: routes.RouteTable, name: str) -> tuple[str, str]:
    m = next(m for m in found.models if m.name == name)
    return m.state, m.message


def test_a_healthy_replica_makes_the_model_ready() -> None:
    found = table([runs("a", "chat"), runs("b", "chat", state="loading")], {"a": "model-chat"})
    assert found.replicas == (
        Replica("chat", "a", "http://a:8000", True, "ready"),
        Replica("chat", "b", "http://b:8000", False, "loading"),
    )
    assert state(found, "chat") == ("ready", "")
    assert state(found, "code") == ("stopped", "")
    chat = next(m for m in found.models if m.name == "chat")
    assert (chat.aliases, chat.served_model_name, chat.load_timeout_s, chat.idle_ttl_s) == (
        ("c",), "chat-served", 90.0, 60.0)  # fmt: skip
    code = next(m for m in found.models if m.name == "code")
    assert (code.load_timeout_s, code.idle_ttl_s) == (300.0, 0.0)
    assert [k.name for k in found.keys] == ["a", "b"] and found.errors == ("bad.yaml: broken",)


def test_health_is_the_agents_word_for_that_project_on_a_node_that_serves() -> None:
    other = table([runs("a", "chat")], {"a": "model-code"})  # healthy: but another project
    assert not other.replicas[0].healthy and state(other, "chat")[0] == "loading"
    stopping = routes.build([CHAT], [], [runs("a", "chat")], {"a": "model-chat"}, {}, {}, [],
                            {"chat": Starting("op-3", ("a",))})  # fmt: skip
    assert not stopping.replicas[0].healthy  # a stop under way there
    for node_state in ("draining", "switching"):
        found = table([runs("a", "chat", state=node_state)], {"a": "model-chat"})
        assert not found.replicas[0].healthy, node_state


def test_a_node_that_is_down_has_no_endpoint_and_no_route() -> None:
    found = table([runs("a", "chat", state="down", message="its agent is not connected")],
                  {"a": "model-chat"})  # fmt: skip
    assert found.replicas == (
        Replica("chat", "a", "", False, "down", "its agent is not connected"),
    )
    assert state(found, "chat") == ("stopped", "runs only on a, which is down")


def test_starting_failed_and_loading() -> None:
    starting = {"chat": Starting("op-1", ("a",))}
    assert state(table([], {}, starting), "chat") == ("loading", "starting on a (operation op-1)")
    failed = table([], {}, failures={"chat": "its start failed (operation op-1): a: no GGUF"})
    assert state(failed, "chat") == ("failed", "its start failed (operation op-1): a: no GGUF")
    sick = runs("a", "chat", state="failed", message="unhealthy: web: HTTP 500")
    assert state(table([sick], {}), "chat") == ("failed", "a: unhealthy: web: HTTP 500")
    # The failure of the gateway's start names its operation; a start under way comes first.
    both = table([sick], {}, failures={"chat": "its start failed (operation op-1): a: gone"})
    assert state(both, "chat") == ("failed", "its start failed (operation op-1): a: gone")
    again = table([sick], {}, starting, failures={"chat": "its start failed"})
    assert state(again, "chat")[0] == "loading"
    waits = {"chat": Starting("op-2", ("a",), "being stopped (operation op-2): it starts again")}
    assert state(table([], {}, waits), "chat") == (
        "loading", "being stopped (operation op-2): it starts again")  # fmt: skip
    waiting = table([runs("a", "chat", state="loading", message="waiting for health checks")], {})
    assert state(waiting, "chat") == ("loading", "a: waiting for health checks")


def test_replicas_of_models_not_defined_are_left_out() -> None:
    found = table([runs("a", "gone"), runs("b", "code")], {"a": "model-gone", "b": "model-code"})
    assert [r.model for r in found.replicas] == ["code"]


def test_equal_inputs_give_equal_tables_and_the_message_carries_the_generation() -> None:
    one = table([runs("a", "chat")], {"a": "model-chat"})
    assert one == table([runs("a", "chat")], {"a": "model-chat"})
    assert one != table([runs("a", "chat")], {})
    sent = convert.table(one, 7)
    assert sent.generation == 7
    assert [(m.name, m.state) for m in sent.models] == [("chat", "ready"), ("code", "stopped")]
    assert [(r.node, r.endpoint, r.healthy) for r in sent.replicas] == [
        ("a", "http://a:8000", True)
    ]
    keys = [(k.name, k.sha256, list(k.models)) for k in sent.keys]
    assert keys == [("a", "11", ["chat"]), ("b", "22", [])]
    assert list(sent.models[0].aliases) == ["c"] and sent.models[0].idle_ttl_s == 60


def test_each_replica_carries_its_requests_in_flight() -> None:
    found = routes.build([CHAT], [], [runs("a", "chat"), runs("b", "chat")],
                         {"a": "model-chat", "b": "model-chat"}, {}, {}, [], {},
                         {"http://a:8000": 3, "http://gone:8000": 9})  # fmt: skip
    assert [(r.node, r.in_flight) for r in found.replicas] == [("a", 3), ("b", 0)]
    assert found != routes.build([CHAT], [], [runs("a", "chat"), runs("b", "chat")],
                                 {"a": "model-chat", "b": "model-chat"}, {}, {}, [])  # fmt: skip
    sent = convert.table(found, 1)
    assert [(r.node, r.in_flight) for r in sent.replicas] == [("a", 3), ("b", 0)]


def test_a_model_being_stopped_is_not_routed_and_says_so() -> None:
    found = routes.build([CHAT], [], [runs("a", "chat")], {"a": "model-chat"}, {}, {}, [],
                         {"chat": Starting("op-9", ("a",))})  # fmt: skip
    assert not found.replicas[0].healthy
    assert state(found, "chat") == (
        "loading",
        "being stopped on a (operation op-9): a request starts it again",
    )


def test_an_activity_report_carries_each_replicas_requests() -> None:
    report = gateway_pb2.ActivityReport(gateway="gw", models=[gateway_pb2.ModelActivity(
        model="chat", in_flight=3, replicas={"http://a:8000": 2, "http://b:8000": 1,
                                             "http://c:8000": 0})])  # fmt: skip
    assert convert.activity(report)["chat"].replicas == {"http://a:8000": 2, "http://b:8000": 1}
    flood = {f"http://n{i}:8000": 1 for i in range(convert.MAX_REPLICAS + 1)}
    report.models[0].replicas.update(flood)
    with pytest.raises(ValueError, match="replicas in one report: at most 1024"):
        convert.activity(report)
