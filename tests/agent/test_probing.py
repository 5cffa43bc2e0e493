"""Health waits and drains over a scripted HTTP edge and a virtual clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from agent.probing import Check, Fetch, Probe, Reply, drain, in_flight, wait_healthy


class VirtualTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def scripted(answer: Callable[[str, float], Reply], time: VirtualTime) -> Fetch:
    async def fetch(url: str) -> Reply:
        return answer(url, time.now)

    return fetch


def test_wait_healthy_passes_when_every_check_answers() -> None:
    time = VirtualTime()
    ready_at = {"http://a/health": 12.0, "http://b/health": 3.0}

    def answer(url: str, now: float) -> Reply:
        return Reply(200, "") if now >= ready_at[url] else Reply(0, "", "no answer (refused)")

    checks = [Check("a", "http://a/health", interval_s=2), Check("b", "http://b/health")]
    verdict = asyncio.run(wait_healthy(checks, scripted(answer, time), time.clock, time.sleep))
    assert verdict.ok and 12 <= verdict.waited_s <= 14


def test_wait_healthy_fails_naming_the_service_and_what_it_saw() -> None:
    time = VirtualTime()
    answer = scripted(lambda url, now: Reply(503, "") if "b" in url else Reply(200, ""), time)
    checks = [Check("a", "http://a/h"), Check("b", "http://b/h", timeout_s=30, interval_s=5)]
    verdict = asyncio.run(wait_healthy(checks, answer, time.clock, time.sleep))
    assert (verdict.ok, verdict.service, verdict.seen) == (False, "b", "HTTP 503")
    assert 30 <= verdict.waited_s < 36


def test_in_flight_parses_prometheus_text() -> None:
    text = (
        "# HELP vllm:num_requests_running Requests running\n"
        "# TYPE vllm:num_requests_running gauge\n"
        'vllm:num_requests_running{model_name="qwen"} 3.0\n'
        'vllm:num_requests_running{model_name="other"} 1\n'
        "vllm:num_requests_waiting 7\n"
    )
    assert in_flight(text, "vllm:num_requests_running") == 4.0
    assert in_flight(text, "missing_metric") is None


def test_drain_waits_for_zero_then_proceeds() -> None:
    time = VirtualTime()
    answer = scripted(lambda url, now: Reply(200, f"inflight {0 if now >= 7 else 2}\n"), time)
    lines: list[str] = []
    outcome = asyncio.run(drain([Probe("llm", "http://x/metrics", "inflight")], 60, 1.0, answer,
                                time.clock, time.sleep, lines.append))  # fmt: skip
    assert outcome.drained and 7 <= outcome.waited_s < 8
    assert lines == ["waiting for llm: 2 in flight"]


def test_drain_timeout_proceeds_and_says_so() -> None:
    time = VirtualTime()
    answer = scripted(lambda url, now: Reply(200, "inflight 5\n"), time)
    outcome = asyncio.run(drain([Probe("llm", "http://x/metrics", "inflight")], 10, 1.0, answer,
                                time.clock, time.sleep))  # fmt: skip
    assert not outcome.drained and outcome.remaining == 5 and outcome.waited_s >= 10
    assert outcome.detail == "llm: 5 in flight"


def test_drain_of_a_service_that_is_gone_is_immediate() -> None:
    time = VirtualTime()
    answer = scripted(lambda url, now: Reply(0, "", "no answer (refused)"), time)
    outcome = asyncio.run(drain([Probe("llm", "http://x/metrics", "inflight")], 10, 1.0, answer,
                                time.clock, time.sleep))  # fmt: skip
    assert outcome.drained and outcome.waited_s == 0


def test_a_stopped_container_fails_the_wait_without_waiting_for_the_timeout() -> None:
    time = VirtualTime()
    answer = scripted(lambda url, now: Reply(0, "", "no answer (refused)"), time)

    async def gone(services: list[str]) -> tuple[str, str] | None:
        return ("web", "its container is exited") if time.now >= 2 else None

    verdict = asyncio.run(wait_healthy([Check("web", "http://w/h", timeout_s=900)], answer,
                                       time.clock, time.sleep, gone=gone))  # fmt: skip
    assert (verdict.ok, verdict.service, verdict.seen) == (False, "web", "its container is exited")
    assert verdict.waited_s < 11  # the first liveness check after it stopped, not 900 s
