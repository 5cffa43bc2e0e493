"""Health waits and drains: poll HTTP endpoints until a condition holds or time runs out.

The loops take `fetch` and `clock` so they are tested without sockets or sleeping.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

FETCH_TIMEOUT_S = 5.0
MAX_BODY = 4 * 1024 * 1024


@dataclass(frozen=True)
class Reply:
    status: int  # 0 when no HTTP answer came (refused, timeout)
    body: str
    error: str = ""

    def describe(self) -> str:
        return self.error if self.status == 0 else f"HTTP {self.status}"


Fetch = Callable[[str], Awaitable[Reply]]


def served_models(body: str) -> list[str] | None:
    """The model ids of an OpenAI model list ({"data": [{"id": ...}, ...]}); None if not one."""
    try:
        found = json.loads(body)
    except ValueError:
        return None
    if not isinstance(found, dict) or not isinstance(found.get("data"), list):
        return None
    return [str(m["id"]) for m in found["data"] if isinstance(m, dict) and "id" in m]


def judge(reply: Reply, expect_status: int, expect_model: str = "") -> str:
    """ "" when a health check's answer passes, else what it saw: the expected status and,
    with `expect_model`, a model list naming that model."""
    if reply.status != expect_status:
        return reply.describe()
    if not expect_model:
        return ""
    models = served_models(reply.body)
    if models is None:
        return f"HTTP {reply.status} without an OpenAI model list (expected model {expect_model})"
    if expect_model not in models:
        listed = ", ".join(models[:5]) + (", ..." if len(models) > 5 else "")
        return f"HTTP {reply.status} listing {listed or 'no model'}, not {expect_model}"
    return ""


# Checks go straight to the service: an http_proxy set for podman pulls must not carry them.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _get(url: str) -> Reply:
    try:
        with _DIRECT.open(url, timeout=FETCH_TIMEOUT_S) as answer:
            return Reply(answer.status, answer.read(MAX_BODY).decode(errors="replace"))
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, "")
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        return Reply(0, "", f"no answer ({reason})")


async def http_get(url: str) -> Reply:
    return await asyncio.to_thread(_get, url)


@dataclass(frozen=True)
class Check:
    service: str
    url: str
    expect_status: int = 200
    timeout_s: float = 300.0
    interval_s: float = 5.0
    expect_model: str = ""  # set: the answer must be a model list naming it


@dataclass(frozen=True)
class Verdict:
    ok: bool
    service: str = ""
    seen: str = ""  # what the failing check saw last
    waited_s: float = 0.0


Gone = Callable[[list[str]], Awaitable[tuple[str, str] | None]]
# After every poll: how many of how many checks passed so far, and what this poll saw.
HealthProgress = Callable[[int, int, str], None]
ALIVE_EVERY_S = 5.0


async def _never_gone(_services: list[str]) -> tuple[str, str] | None:
    return None


async def wait_healthy(
    checks: list[Check],
    fetch: Fetch = http_get,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    progress: HealthProgress = lambda _healthy, _total, _line: None,
    gone: Gone = _never_gone,
) -> Verdict:
    """All checks polled side by side; the first whose timeout passes fails the wait. Every
    ALIVE_EVERY_S, `gone` may name a service whose container stopped: that fails at once
    instead of after its (often long) timeout."""
    start = clock()
    pending = {check.service: check for check in checks}
    total = len(pending)
    seen: dict[str, str] = {}
    next_poll = dict.fromkeys(pending, start)
    next_alive = start + ALIVE_EVERY_S
    while pending:
        now = clock()
        if now >= next_alive:
            next_alive = now + ALIVE_EVERY_S
            stopped = await gone(sorted(pending))
            if stopped is not None:
                return Verdict(False, stopped[0], stopped[1], clock() - start)
        for name, check in list(pending.items()):
            if now < next_poll[name]:
                continue
            reply = await fetch(check.url)
            failure = judge(reply, check.expect_status, check.expect_model)
            if not failure:
                del pending[name]
                healthy = total - len(pending)
                progress(healthy, total, f"{name} healthy after {clock() - start:.1f} s")
                continue
            seen[name] = failure
            progress(total - len(pending), total, f"{name}: {check.url} gave {seen[name]}")
            if clock() - start >= check.timeout_s:
                return Verdict(False, name, seen[name], clock() - start)
            # A fixed cadence from the start: a slow answer does not push every later poll back.
            next_poll[name] = max(next_poll[name] + check.interval_s, clock())
        if pending:
            await sleep(max(0.05, min(*next_poll.values(), next_alive) - clock()))
    return Verdict(True, waited_s=clock() - start)


METRIC_LINE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{[^}]*\})?\s+(?P<value>\S+)")


def in_flight(text: str, metric: str) -> float | None:
    """Sum of a metric's samples in Prometheus text format (all label sets); None if absent."""
    total, found = 0.0, False
    for line in text.splitlines():
        match = METRIC_LINE.match(line)
        if match and match.group("name") == metric:
            try:
                total += float(match.group("value"))
                found = True
            except ValueError:
                continue
    return total if found else None


@dataclass(frozen=True)
class Probe:
    service: str
    url: str
    metric: str


@dataclass(frozen=True)
class DrainOutcome:
    drained: bool  # False: the timeout passed with requests still in flight
    remaining: float
    waited_s: float
    detail: str


async def drain(
    probes: list[Probe],
    timeout_s: float,
    interval_s: float = 1.0,
    fetch: Fetch = http_get,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    progress: Callable[[str], None] = lambda _line: None,
) -> DrainOutcome:
    """Wait until every probe reads zero in flight. A probe that does not answer counts as
    drained (the service is gone, nothing is in flight there)."""
    start = clock()
    last_report = None
    while True:
        counts: dict[str, float] = {}
        for probe in probes:
            reply = await fetch(probe.url)
            value = in_flight(reply.body, probe.metric) if reply.status == 200 else None
            counts[probe.service] = value or 0.0
        busy = {name: n for name, n in counts.items() if n > 0}
        waited = clock() - start
        detail = ", ".join(f"{name}: {n:g} in flight" for name, n in busy.items())
        if not busy:
            return DrainOutcome(True, 0.0, waited, "no requests in flight")
        if waited >= timeout_s:
            return DrainOutcome(False, sum(busy.values()), waited, detail)
        if detail != last_report:
            progress(f"waiting for {detail}")
            last_report = detail
        await sleep(interval_s)
