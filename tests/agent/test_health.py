"""The health monitor: what the agent reports it runs comes from health checks, not from
containers that exist. Podman and HTTP are scripted at the process edge; time is virtual."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

from agent.compose import Completed, Podman
from agent.health import FAILS_TO_UNHEALTHY, HealthMonitor, Observed
from agent.link import observed_to_proto
from agent.probing import Reply
from agent.projects import ProjectStore
from hub.ops.running import running_from_proto
from hub.states import NodeState, observed

COMPOSE = """
x-gpufleet:
  description: test
  use_case: tests
  services:
    web:
      vram_gb: 1
      health: {url: "http://127.0.0.1:${WEB_PORT:-1}/health", timeout: 30, interval: 2}
services:
  web: {image: localhost/x}
"""


class Host:
    """Podman's `ps` and the services' HTTP answers, as a test sets them."""

    def __init__(self) -> None:
        self.state = "running"
        self.container = "c1"
        self.status = 200
        self.fetched: list[str] = []
        self.now = 0.0

    async def run(self, argv: list[str], env: Mapping[str, str], limit_s: float) -> Completed:
        assert argv[:2] == ["podman", "ps"]
        entry = {"Id": self.container, "State": self.state,
                 "Labels": {"com.docker.compose.service": "web"}}  # fmt: skip
        return Completed(0, json.dumps([entry]), "")

    async def fetch(self, url: str) -> Reply:
        self.fetched.append(url)
        return Reply(self.status, "")


def monitor(tmp_path: Path, host: Host, compose: str = COMPOSE) -> HealthMonitor:
    store = ProjectStore(tmp_path, env={"WEB_PORT": "8123"})  # as agent/main.py: one env
    store.write("alpha", compose, hashlib.sha256(compose.encode()).hexdigest())
    podman = Podman("gpu-a", run=host.run)
    return HealthMonitor(store, podman, {"WEB_PORT": "8123"}, fetch=host.fetch,
                         clock=lambda: host.now)  # fmt: skip


def hub_state(found: list[Observed] | None) -> tuple[NodeState, str, str]:
    assert found is not None and len(found) == 1
    return observed(running_from_proto(observed_to_proto(found[0])))


def test_a_hello_rechecks_health_and_a_404_is_loading_then_failed_never_ready(
    tmp_path: Path,
) -> None:
    host = Host()
    host.status = 404
    watch = monitor(tmp_path, host)
    found = asyncio.run(watch.recheck())
    # The URL is expanded with this host's variables, as podman-compose expands the file.
    assert host.fetched == ["http://127.0.0.1:8123/health"]
    state, config, note = hub_state(found)
    assert (state, config) == (NodeState.LOADING, "alpha")
    assert "HTTP 404" in note and "timeout 30 s" in note
    host.now = 31.0  # past the check's timeout and still 404: failed
    asyncio.run(watch.recheck())
    assert hub_state(watch.snapshot())[:2] == (NodeState.FAILED, "alpha")
    assert "unhealthy: web: http://127.0.0.1:8123/health gave HTTP 404" in hub_state(
        watch.snapshot())[2]  # fmt: skip
    host.status = 200
    asyncio.run(watch.recheck())
    assert hub_state(watch.snapshot()) == (NodeState.READY, "alpha", "")


def test_heartbeats_carry_the_report_only_when_it_changed(tmp_path: Path) -> None:
    host = Host()
    watch = monitor(tmp_path, host)
    asyncio.run(watch.recheck())
    assert watch.changed()[0] is False  # the hello carried it
    host.status = 503
    for tick in range(1, FAILS_TO_UNHEALTHY):
        host.now = 2.0 * tick
        asyncio.run(watch._poll(force=False))
        # One or two failures in a row after passing: not yet a verdict, nothing to report.
        assert watch.changed()[0] is False
    host.now += 2.0
    asyncio.run(watch._poll(force=False))
    changed, found = watch.changed()
    assert changed and hub_state(found)[0] == NodeState.FAILED
    assert watch.changed()[0] is False


def test_an_exited_container_is_failed_and_a_new_container_is_checked_afresh(
    tmp_path: Path,
) -> None:
    host = Host()
    watch = monitor(tmp_path, host)
    asyncio.run(watch.recheck())
    host.state = "exited"
    asyncio.run(watch._list(None))
    state, _, note = hub_state(watch.snapshot())
    assert state == NodeState.FAILED and "web is exited" in note
    host.state, host.container, host.status = "running", "c2", 503
    host.now = 100.0
    asyncio.run(watch.recheck())
    assert hub_state(watch.snapshot())[0] == NodeState.LOADING  # a start, within its timeout


def test_a_health_wait_that_passed_is_reported_healthy_at_once(tmp_path: Path) -> None:
    host = Host()
    host.status = 503  # the monitor has only seen it loading
    watch = monitor(tmp_path, host)
    asyncio.run(watch.recheck())
    assert hub_state(watch.snapshot())[0] == NodeState.LOADING
    asyncio.run(watch.passed("alpha", ["web"]))
    assert hub_state(watch.snapshot())[0] == NodeState.READY


def test_a_configuration_without_checks_is_never_reported_ready(tmp_path: Path) -> None:
    host = Host()
    watch = monitor(tmp_path, host, "services:\n  web: {image: localhost/x}\n")
    state, _, note = hub_state(asyncio.run(watch.recheck()))
    assert state == NodeState.LOADING and "no health check known" in note
    assert host.fetched == []


def test_podman_trouble_is_reported_as_unknown(tmp_path: Path) -> None:
    host = Host()

    async def broken(argv: list[str], env: Mapping[str, str], limit_s: float) -> Completed:
        return Completed(125, "", "cannot connect to podman")

    watch = monitor(tmp_path, host)
    watch.podman = Podman("gpu-a", run=broken)
    assert asyncio.run(watch.recheck()) is None


def test_one_failed_podman_ps_is_not_yet_a_verdict(tmp_path: Path) -> None:
    host = Host()
    watch = monitor(tmp_path, host)
    assert hub_state(asyncio.run(watch.recheck()))[0] == NodeState.READY
    good = watch.podman

    async def broken(argv: list[str], env: Mapping[str, str], limit_s: float) -> Completed:
        return Completed(125, "", "podman timed out")

    watch.podman = Podman("gpu-a", run=broken)
    asyncio.run(watch._list(None))
    assert hub_state(watch.snapshot())[0] == NodeState.READY  # the last good listing
    asyncio.run(watch._list(None))
    assert watch.snapshot() is None  # twice in a row: the hub hears "cannot tell"
    watch.podman = good
    asyncio.run(watch._list(None))
    assert watch.snapshot() is not None


def test_a_huge_number_in_the_stored_file_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    """math.isfinite(10**400) raises OverflowError: the hello must still carry a report."""
    host = Host()
    watch = monitor(tmp_path, host, COMPOSE.replace("timeout: 30", "timeout: " + "9" * 400))
    found = asyncio.run(watch.recheck())
    assert found is not None and len(found) == 1
    assert host.fetched == []  # no check known: nothing polled
    assert number_note(found) and "timeout" in number_note(found)


def number_note(found: list[Observed]) -> str:
    return hub_state(found)[2]


def test_a_health_endpoint_answering_garbage_is_a_failed_check(tmp_path: Path) -> None:
    """http.client.BadStatusLine is no OSError: the real HTTP get answers it as no answer,
    and a fetch that raises anything fails its check instead of the whole poll."""
    import socket
    import threading

    from agent.probing import http_get

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def answer() -> None:
        connection, _ = server.accept()
        connection.recv(4096)
        connection.sendall(b"garbage\r\n\r\n")
        connection.close()

    threading.Thread(target=answer, daemon=True).start()
    reply = asyncio.run(http_get(f"http://127.0.0.1:{server.getsockname()[1]}/health"))
    server.close()
    assert reply.status == 0 and "no answer" in reply.error

    class Raising(Host):
        async def fetch(self, url: str) -> Reply:
            raise RuntimeError("a bug in a fetch")

    watch = monitor(tmp_path, Raising())
    found = asyncio.run(watch.recheck())
    assert found is not None and hub_state(found)[0] == NodeState.LOADING
    assert "a bug in a fetch" in hub_state(found)[2]


def test_a_hello_goes_out_whatever_the_stored_file_holds(tmp_path: Path) -> None:
    """The hello carries what runs even when a stored health section is absurd (before,
    OverflowError left every hello raising and the agent never stayed connected)."""
    from agent.link import AgentLink, Identity
    from agent.main import task_kinds
    from agent.probes import NoProbe
    from agent.tasks.context import TaskContext
    from agent.tasks.runner import TaskRunner

    host = Host()
    watch = monitor(tmp_path, host, COMPOSE.replace("interval: 2", "interval: 1" + "0" * 400))
    context = TaskContext.create(watch.store, watch.podman, NoProbe(), {})
    link = AgentLink("unused:1", Identity("gpu-a", "id"), NoProbe(),
                     tasks=TaskRunner(task_kinds(), context), monitor=watch)  # fmt: skip
    hello = asyncio.run(link.hello())
    assert not hello.projects_unknown and [p.name for p in hello.projects] == ["alpha"]


class SlowHost(Host):
    """podman ps answers what ran when it was asked, after the test lets it go."""

    def __init__(self) -> None:
        super().__init__()
        self.gate: asyncio.Event | None = None

    async def run(self, argv: list[str], env: Mapping[str, str], limit_s: float) -> Completed:
        seen = await super().run(argv, env, limit_s)
        if self.gate is not None:
            await self.gate.wait()
        return seen


def test_a_listing_begun_before_a_task_changed_the_project_is_not_reported(
    tmp_path: Path,
) -> None:
    """A listing that started before a compose down answers the containers that were
    running; applied after the stop task's result, it would report the project ready again.
    A touched project is reported only once listed afresh."""
    host = SlowHost()
    watch = monitor(tmp_path, host)

    async def go() -> tuple[bool, bool, list[Observed] | None]:
        await watch.recheck()
        host.gate = asyncio.Event()
        host.container = "c2"  # what runs differs from what was sent: a report is due
        listing = asyncio.ensure_future(watch._list(None))  # podman ps: alpha still runs
        await asyncio.sleep(0.01)
        host.state = "exited"  # the stop task took it down...
        watch.touched("alpha")  # ...and said so
        host.gate.set()
        await listing
        held = watch.changed()[0]  # nothing is sent while alpha waits for its re-list
        host.gate = None
        await watch._list(watch._dirty.pop(), reread=True)
        changed, found = watch.changed()
        return held, changed, found

    held, changed, found = asyncio.run(go())
    assert held is False
    assert changed and found is not None
    assert [c.state for o in found for c in o.running.containers] == ["exited"]
