"""The scaler's decisions, pure and on a fake clock: which models are idle (the gateways'
activity, the window, the idle clock from the last finish) and which node a scale from zero
takes (never one that runs something else)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hub.gateway.idle import Activity, Candidate, Seen, idle
from hub.gateway.placement import NoNode, Place, pick

T0 = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


CHAT = Candidate("chat", 60, started=at(0))


def decide(activity: Activity, now: float, *models: Candidate) -> list[str]:
    return idle(models or (CHAT,), activity.seen(at(now)), at(now))


def test_nobody_asked_the_clock_runs_from_the_start() -> None:
    activity = Activity(window_s=6)
    assert decide(activity, 59.9) == []
    assert decide(activity, 60) == ["chat"]
    assert idle([Candidate("x", 60, None)], {}, at(1000)) == []  # no clock to count from


def test_the_idle_clock_starts_when_the_last_request_finished() -> None:
    activity = Activity(window_s=6)
    # A long request: started at 10, finished at 100; reported at 101.
    activity.report("gw1", at(101), {"chat": Seen(0, at(100))})
    assert decide(activity, 105) == []
    activity.report("gw1", at(155), {"chat": Seen(0, at(100))})
    assert decide(activity, 159.9) == []
    assert decide(activity, 160) == ["chat"]


def test_a_request_in_flight_anywhere_keeps_it() -> None:
    activity = Activity(window_s=6)
    activity.report("gw1", at(200), {"chat": Seen(0, at(10))})
    activity.report("gw2", at(200), {"chat": Seen(1, None)})
    assert decide(activity, 201) == []
    activity.report("gw2", at(202), {"chat": Seen(0, at(202))})
    assert decide(activity, 203) == []
    # Both stopped reporting: their reports are dropped after the window, but the hub keeps
    # the last activity: the clock counts from the last finish, not from the model's start.
    assert activity.gateways(at(209)) == []
    assert decide(activity, 209) == []
    assert decide(activity, 261.9) == [] and decide(activity, 262) == ["chat"]


def test_a_restarted_gateway_does_not_reset_the_clock() -> None:
    activity = Activity(window_s=6)
    activity.report("gw1", at(100), {"chat": Seen(0, at(99))})
    activity.report("gw1", at(102), {})  # restarted: its first report names no model
    assert decide(activity, 158.9) == [] and decide(activity, 159) == ["chat"]


def test_a_request_in_flight_moves_the_clock_to_now() -> None:
    activity = Activity(window_s=6)
    for t in range(100, 131, 2):  # a request that lasts from 100 to 130, reported every 2 s
        activity.report("gw1", at(t), {"chat": Seen(1, at(50))})
        assert decide(activity, t + 1) == []
    activity.report("gw1", at(132), {})  # then the gateway restarted and lost it
    # Active until the hub last saw it in flight (131), then idle 60 s: never from 50.
    assert decide(activity, 190.9) == [] and decide(activity, 191) == ["chat"]


def test_a_gateway_that_vanished_with_requests_in_flight_counts_for_a_grace() -> None:
    activity = Activity(window_s=6)
    activity.report("gw1", at(100), {"chat": Seen(3, at(99))})  # then it died
    assert decide(activity, 105) == [] and activity.gateways(at(105)) == ["gw1"]
    assert activity.gateways(at(107)) == []  # not a live gateway any more, but its requests
    assert decide(activity, 117) == []  # count for two more windows (until 118)
    assert activity.seen(at(118))["chat"].in_flight == 3
    assert activity.seen(at(119))["chat"] == Seen(0, at(118))
    assert decide(activity, 177.9) == [] and decide(activity, 178) == ["chat"]


def test_per_replica_in_flight_sums_the_live_gateways() -> None:
    activity = Activity(window_s=6)
    activity.report("gw1", at(100), {"chat": Seen(2, None, {"http://a:1": 1, "http://b:1": 1})})
    activity.report("gw2", at(103), {"chat": Seen(1, None, {"http://a:1": 1})})
    assert activity.replicas(at(104)) == {"http://a:1": 2, "http://b:1": 1}
    assert activity.replicas(at(107)) == {"http://a:1": 1}  # gw1's report is out of the window


def test_a_finish_in_the_future_counts_as_now() -> None:
    activity = Activity(window_s=6)
    activity.report("gw1", at(100), {"chat": Seen(0, at(10_000))})
    assert activity.seen(at(100))["chat"].last_finished == at(100)
    activity.report("gw1", at(159), {"chat": Seen(0, at(10_000))})
    assert decide(activity, 160) == []  # counted from 159 (its report's now), not 10 000


def test_each_model_its_own_ttl() -> None:
    activity = Activity(window_s=6)
    activity.report("gw1", at(30), {"chat": Seen(0, at(30)), "code": Seen(0, at(5))})
    code = Candidate("code", 20, started=at(0))
    assert decide(activity, 31, CHAT, code) == ["code"]


def place(node: str, runs: str = "", held: str = "", gpus: int = 1, free_mb: int = 80_000,
          connected: bool = True) -> Place:  # fmt: skip
    return Place(node, connected, runs, held, gpus, free_mb)


def test_the_free_node_with_most_free_memory_then_by_name() -> None:
    nodes = [place("b", free_mb=40_000), place("c"), place("a"), place("d", runs="model-x")]
    assert pick("chat", 1, None, nodes) == "a"
    assert pick("chat", 2, None, [*nodes, place("e", gpus=2, free_mb=1)]) == "e"
    assert (
        pick("tiny", 0, None, [place("z", gpus=0, free_mb=0), place("y", gpus=0, free_mb=0)]) == "y"
    )


def test_never_a_node_that_runs_something_else_is_held_or_down() -> None:
    nodes = [place("a", runs="model-code"), place("b", held="op-7"), place("c", connected=False),
             place("d", gpus=1)]  # fmt: skip
    with pytest.raises(NoNode) as caught:
        pick("chat", 2, None, nodes)
    assert str(caught.value) == (
        "model chat: no free node to start it on (a runs model code, b is in operation op-7, "
        "c is down, d has 1 GPU (2 needed)): stop a model there (`hubctl models stop NAME`), "
        "add a node, or set gateway.node"
    )
    with pytest.raises(NoNode, match="the hub knows no node"):
        pick("chat", 1, None, [])


def test_the_configured_node() -> None:
    nodes = [place("a", free_mb=1), place("b"), place("c", runs="model-code")]
    assert pick("chat", 1, "a", nodes) == "a"
    with pytest.raises(NoNode) as caught:
        pick("chat", 1, "c", nodes)
    assert str(caught.value) == (
        "model chat starts on c (its gateway.node), and c runs model code: stop it first "
        "(`hubctl models stop code`), or change gateway.node"
    )
    with pytest.raises(NoNode, match=r"its gateway\.node x is not a known node"):
        pick("chat", 1, "x", nodes)
