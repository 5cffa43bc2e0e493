"""Switching configurations with real Podman containers, through a real hub and agents."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from agent.compose import compose_name
from agent.projects import ProjectStore
from gpufleet.policy import Policy
from hub.configs import load_configuration
from tests.support import podman
from tests.support.fleet import CONFIGS, Fleet
from tests.support.procs import REPO, Cluster, wait_until


def results(operation: dict[str, Any]) -> dict[str, str]:
    return {n["node"]: n["result"] for n in operation["nodes"]}


def test_switch_three_nodes_one_at_a_time(fleet: Fleet) -> None:
    names = ["a", "b", "c"]
    for name in names:
        fleet.agent(name)
    fleet.cluster.wait_status({fleet.node(n): "ready" for n in names})
    first = fleet.switch("alpha", *names)
    assert first["status"] == "succeeded", first
    assert {fleet.health(n) for n in names} == {"alpha"}

    second = fleet.switch("beta", *names, extra=("--serial", "1"))
    assert second["exit_code"] == 0 and set(results(second).values()) == {"changed"}
    states = fleet.status()
    assert {(states[fleet.node(n)]["state"], states[fleet.node(n)]["configuration"])
            for n in names} == {("ready", "beta")}  # fmt: skip
    assert {fleet.health(n) for n in names} == {"beta"}
    projects = {c["project"] for c in fleet.containers()}
    # alpha's containers are gone
    assert projects == {compose_name(fleet.node(n), "beta") for n in names}

    shown = fleet.cluster.json("nodes", "show", fleet.node("a"))
    walk = [(t["from"], t["to"]) for t in reversed(shown["transitions"])]
    assert walk[-4:] == [("ready", "draining"), ("draining", "switching"),
                         ("switching", "loading"), ("loading", "ready")]  # fmt: skip
    assert shown["transitions"][0]["operation_id"] == second["id"]
    assert (shown["state"], shown["configuration"]) == ("ready", "beta")

    metrics = scrape(fleet.cluster.http)
    assert metrics[("gpufleet_node_state", fleet.node("a"), "ready")] == 1
    assert metrics[("gpufleet_node_state", fleet.node("a"), "loading")] == 0
    assert metrics[("gpufleet_switch_step_seconds_count", "", "start")] == 6
    assert metrics[("gpufleet_switch_step_seconds_count", "", "drain")] == 3
    assert metrics[("gpufleet_operations_total", "", "switch/succeeded")] == 2

    # --serial 1: each node began only after the one before it had its result.
    events = [(e["node"], e["step"]) for e in watch_events(fleet, second["id"])]
    order = [node for node, step in events if step in ("begin", "result")]
    assert order == [fleet.node(n) for n in names for _ in (0, 1)]


def scrape(address: str) -> dict[tuple[str, str, str], float]:
    """(metric, node, state or step or kind/status) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            key = labels.get("state") or labels.get("step") or (
                f"{labels['kind']}/{labels['status']}" if "kind" in labels else "")  # fmt: skip
            found[(sample.name, labels.get("node", ""), key)] = sample.value
    return found


def watch_events(fleet: Fleet, operation_id: str) -> list[dict[str, str]]:
    output = fleet.hubctl("ops", "watch", operation_id).stdout
    rows = []
    for line in output.splitlines():
        parts = line.split(maxsplit=3)
        if len(parts) >= 3 and parts[0].count(":") == 2:
            rows.append({"node": parts[1], "step": parts[2]})
    return rows


def test_failed_health_rolls_back_and_names_the_service(fleet: Fleet) -> None:
    fleet.agent("a")
    fleet.cluster.wait_status({fleet.node("a"): "ready"})
    assert fleet.switch("alpha", "a")["status"] == "succeeded"
    failed = fleet.switch("never-healthy", "a")
    assert failed["exit_code"] == 1 and results(failed) == {fleet.node("a"): "failed"}
    message = failed["nodes"][0]["message"]
    assert "service web not healthy" in message and "HTTP 404" in message
    assert "loading weights" in message  # the last lines of its log
    assert "rolled back to alpha, healthy" in message
    state = fleet.status()[fleet.node("a")]
    assert (state["state"], state["configuration"]) == ("ready", "alpha")
    assert fleet.health("a") == "alpha"
    assert {c["project"] for c in fleet.containers()} == {compose_name(fleet.node("a"), "alpha")}


def test_drain_waits_for_in_flight_requests(fleet: Fleet) -> None:
    fleet.agent("a")
    fleet.cluster.wait_status({fleet.node("a"): "ready"})
    assert fleet.switch("beta", "a")["status"] == "succeeded"  # beta drains for up to 20 s
    fleet.set_in_flight("a", 2)
    started = fleet.hubctl("switch", "alpha", "--node", fleet.node("a"), "--detach", "--json")
    operation_id = __import__("json").loads(started.stdout)["id"]
    wait_until(lambda: fleet.status()[fleet.node("a")]["state"] == "draining", 10, "draining")
    time.sleep(1.5)
    assert fleet.status()[fleet.node("a")]["state"] == "draining"  # still waiting on 2
    assert fleet.health("a") == "beta"
    fleet.set_in_flight("a", 0)
    done = fleet.cluster.json("ops", "watch", operation_id)
    assert done["status"] == "succeeded"
    assert fleet.health("a") == "alpha"
    shown = fleet.hubctl("ops", "watch", operation_id).stdout
    assert "waiting for" not in shown or "drained after" in shown
    assert "drained after" in shown


def test_drain_timeout_proceeds_and_says_so(fleet: Fleet) -> None:
    fleet.agent("a")
    fleet.cluster.wait_status({fleet.node("a"): "ready"})
    assert fleet.switch("alpha", "a")["status"] == "succeeded"  # alpha drains for up to 3 s
    fleet.set_in_flight("a", 2)
    switched = fleet.switch("beta", "a")
    assert switched["status"] == "succeeded"
    shown = fleet.hubctl("ops", "show", switched["id"]).stdout + fleet.hubctl(
        "ops", "watch", switched["id"]).stdout  # fmt: skip
    assert "drain timed out after 3 s with web: 2 in flight; proceeding" in shown
    assert fleet.health("a") == "beta"


def test_switching_to_the_running_configuration_restarts_nothing(fleet: Fleet) -> None:
    fleet.agent("a")
    fleet.cluster.wait_status({fleet.node("a"): "ready"})
    assert fleet.switch("alpha", "a")["status"] == "succeeded"
    before = fleet.containers()
    again = fleet.switch("alpha", "a")
    assert results(again) == {fleet.node("a"): "ok"}
    checked = fleet.switch("beta", "a", extra=("--check",))
    assert results(checked) == {fleet.node("a"): "changed"} and checked["check"]
    assert "would drain and stop alpha, start beta" in checked["nodes"][0]["message"]
    assert fleet.containers() == before  # same container ids, nothing restarted
    assert fleet.health("a") == "alpha"


def test_a_second_operation_on_a_busy_node_is_refused(fleet: Fleet) -> None:
    fleet.agent("a", load_delay=4)
    fleet.cluster.wait_status({fleet.node("a"): "ready"})
    started = fleet.hubctl("switch", "alpha", "--node", fleet.node("a"), "--detach", "--json")
    operation_id = __import__("json").loads(started.stdout)["id"]
    refused = fleet.hubctl("switch", "beta", "--node", fleet.node("a"))
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"hubctl: node {fleet.node('a')} is already in operation {operation_id}: wait for it "
        f"(hubctl ops watch {operation_id}) and try again"
    )
    assert fleet.cluster.json("ops", "watch", operation_id)["status"] == "succeeded"


def test_offline_node_is_unreachable_and_the_others_go_on(fleet: Fleet) -> None:
    fleet.agent("a")
    gone = fleet.agent("b")
    fleet.cluster.wait_status({fleet.node("a"): "ready", fleet.node("b"): "ready"})
    gone.kill()
    fleet.cluster.wait_status({fleet.node("b"): "down"})
    switched = fleet.switch("alpha", "a", "b")
    assert switched["exit_code"] == 1
    assert results(switched) == {fleet.node("a"): "changed", fleet.node("b"): "unreachable"}


def test_max_fail_stops_starting_nodes(fleet: Fleet) -> None:
    for name in ("a", "b", "c"):
        fleet.agent(name)
    fleet.cluster.wait_status({fleet.node(n): "ready" for n in "abc"})
    failed = fleet.switch("never-healthy", "a", "b", "c",
                          extra=("--serial", "1", "--max-fail", "0%", "--no-rollback"))  # fmt: skip
    assert results(failed) == {fleet.node("a"): "failed", fleet.node("b"): "skipped",
                               fleet.node("c"): "skipped"}  # fmt: skip
    assert fleet.status()[fleet.node("a")]["state"] == "failed"


def test_hub_killed_mid_switch_leaves_no_operation_running(fleet: Fleet) -> None:
    fleet.agent("a", load_delay=5)
    fleet.cluster.wait_status({fleet.node("a"): "ready"})
    started = fleet.hubctl("switch", "beta", "--node", fleet.node("a"), "--detach", "--json")
    operation_id = __import__("json").loads(started.stdout)["id"]
    wait_until(lambda: fleet.status()[fleet.node("a")]["state"] == "loading", 20, "loading")
    fleet.cluster.hub.kill()
    fleet.cluster.start_hub()
    shown = fleet.cluster.json("ops", "show", operation_id)
    assert shown["status"] == "interrupted"
    assert [n["result"] for n in shown["nodes"]] == ["interrupted"]
    assert all(op["status"] != "running" for op in fleet.cluster.json("ops"))

    # The agent's hello says what it runs: beta's containers, up.
    def from_hello() -> bool:
        state = fleet.status()[fleet.node("a")]
        return (state["state"], state["configuration"]) == ("ready", "beta")

    wait_until(from_hello, 30, "the node's state from the agent's hello")


def test_cdi_dry_run_maps_reserved_gpus_to_cdi_devices(tmp_path: Path, image: str) -> None:
    config = load_configuration(CONFIGS / "alpha.yaml")
    policy = Policy(allow_bind_roots=(str(tmp_path),))  # alpha binds METRICS_DIR
    store = ProjectStore(tmp_path, "cdi", policy, {"METRICS_DIR": str(tmp_path)})
    project = store.write("alpha", config.text, config.digest)
    name = f"gf-cdi-{secrets.token_hex(3)}"
    env = {**__import__("os").environ, **podman.env(), "WEB_PORT": "18999",
           "METRICS_DIR": str(tmp_path)}  # fmt: skip
    try:
        run = subprocess.run(
            [sys.executable, "-m", "podman_compose", "--verbose", "--dry-run", "-p", name,
             "-f", str(project.compose_file), "up", "-d"],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
    finally:
        podman.podman("network", "rm", "-f", f"{name}_default", check=False)
    assert "--device nvidia.com/gpu=0" in run.stdout + run.stderr


def test_drain_then_stop(fleet: Fleet) -> None:
    fleet.agent("a")
    fleet.cluster.wait_status({fleet.node("a"): "ready"})
    assert fleet.switch("alpha", "a")["status"] == "succeeded"
    drained = fleet.hubctl("drain", fleet.node("a"), "--json")
    assert drained.returncode == 0, drained.stderr
    assert fleet.status()[fleet.node("a")]["state"] == "draining"
    assert fleet.health("a") == "alpha"  # draining stops nothing
    stopped = fleet.hubctl("stop", "--all", "--json")
    assert stopped.returncode == 0, stopped.stderr
    state = fleet.status()[fleet.node("a")]
    assert (state["state"], state["configuration"]) == ("stopped", None)
    assert fleet.containers() == []


def test_configs_and_validate_through_the_hub(fleet: Fleet, tmp_path: Path) -> None:
    listed = fleet.cluster.json("configs")
    names = [c["name"] for c in listed["configurations"]]
    assert names == ["alpha", "beta", "crashes", "never-healthy"]
    assert listed["errors"] == []
    good = fleet.hubctl("configs", "validate", str(CONFIGS / "alpha.yaml"))
    assert good.returncode == 0 and "valid configuration alpha (web)" in good.stdout
    broken = tmp_path / "broken.yaml"
    broken.write_text((CONFIGS / "alpha.yaml").read_text().replace("vram_gb: 1", "vram_gbs: 1"))
    bad = fleet.hubctl("configs", "validate", str(broken))
    assert bad.returncode == 1 and bad.stdout == ""
    [line] = bad.stderr.splitlines()
    assert "broken.yaml: x-gpufleet.services.web.vram_gbs: unknown key" in line
    missing = fleet.hubctl("configs", "validate", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr

    # Four problems in four places: four lines, each naming the file, service and field.
    text = (CONFIGS / "alpha.yaml").read_text()
    for old, new in [
        ("vram_gb: 1", "vram_gbs: 1"),
        ("critical", "critcal"),
        ("timeout: 30", "timeout: -30"),
        ("image: localhost", "imag: localhost"),
    ]:
        text = text.replace(old, new, 1)
    (tmp_path / "four.yaml").write_text(text)
    four = fleet.hubctl("configs", "validate", str(tmp_path / "four.yaml"))
    lines = four.stderr.splitlines()
    assert four.returncode == 1 and four.stdout == "" and len(lines) == 4, four.stderr
    assert all(line.startswith("hubctl: four.yaml: ") for line in lines), lines
    assert [line.split(": ")[2] for line in lines] == [
        "services.web", "x-gpufleet.services.web.vram_gbs",
        "x-gpufleet.services.web.latency_class", "x-gpufleet.services.web.health.timeout",
    ]  # fmt: skip
    assert "(did you mean 'vram_gb'?)" in lines[1] and "(did you mean 'critical'?)" in lines[2]
    both = fleet.hubctl("configs", "validate", str(tmp_path / "four.yaml"),
                        str(CONFIGS / "alpha.yaml"), "--json")  # fmt: skip
    found = json.loads(both.stdout)
    assert both.returncode == 1 and found["valid"] is False
    assert [len(f["problems"]) for f in found["files"]] == [4, 0]
    assert found["problems"] == [line.removeprefix("hubctl: ") for line in lines]
    assert found["files"][1]["configuration"] == "alpha" and found["files"][1]["valid"]
    assert fleet.cluster.json("configs") == listed  # validating changed nothing


def test_a_server_that_exits_at_once_fails_without_waiting_out_its_timeout(fleet: Fleet) -> None:
    fleet.agent("a")
    fleet.cluster.wait_status({fleet.node("a"): "ready"})
    assert fleet.switch("alpha", "a")["status"] == "succeeded"
    started = time.monotonic()
    failed = fleet.switch("crashes", "a")
    assert time.monotonic() - started < 30  # its health timeout is 120 s
    message = failed["nodes"][0]["message"]
    assert "its container is exited" in message and "unknown flag --bogus" in message
    assert "rolled back to alpha, healthy" in message
    assert fleet.health("a") == "alpha"


def test_progress_is_stored_and_a_cancel_stops_the_operation_truthfully(fleet: Fleet) -> None:
    for name in ("a", "b"):
        fleet.agent(name)
    fleet.cluster.wait_status({fleet.node(n): "ready" for n in ("a", "b")})
    assert fleet.switch("beta", "a", "b")["status"] == "succeeded"  # beta drains for up to 20 s
    fleet.set_in_flight("a", 2)
    nodes = ["--node", fleet.node("a"), "--node", fleet.node("b")]
    started = fleet.hubctl("switch", "alpha", *nodes, "--serial", "1", "--detach")
    operation_id = started.stdout.strip().split()[-1]

    def drain_progress() -> list[dict[str, Any]]:
        shown = fleet.cluster.json("ops", "show", operation_id)
        return [e for e in shown["events"] if e["progress"] and e["step"] == "drain"]

    # The agent's drain reports the in-flight count while it waits: the hub stores it.
    wait_until(lambda: len(drain_progress()) >= 1, 15, "drain progress events")
    assert "2" in drain_progress()[-1]["message"]

    cancelled = fleet.cluster.json("ops", "cancel", operation_id)
    assert cancelled["status"] == "cancelled"
    assert results(cancelled) == {fleet.node("a"): "cancelled", fleet.node("b"): "skipped"}
    # The drain was cancelled: nothing was stopped, both still serve beta, and say so.
    states = fleet.status()
    assert {n: (states[fleet.node(n)]["state"], states[fleet.node(n)]["configuration"])
            for n in ("a", "b")} == {"a": ("ready", "beta"), "b": ("ready", "beta")}  # fmt: skip
    assert fleet.health("a") == "beta" and fleet.health("b") == "beta"

    again = fleet.hubctl("ops", "cancel", operation_id)
    assert again.returncode != 0 and "already ended (cancelled)" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    shown = fleet.hubctl("ops", "show", operation_id).stdout
    assert "cancelled by" in shown and "drain" in shown


def test_a_check_warns_what_the_gpus_of_each_node_cannot_hold(tmp_path: Path) -> None:
    """big-chat (2 x 72 GB) on a node without GPUs and on the A5500 + A400 workstation: the
    check still says what it would do, and warns per node, in --json, the recap and ops show."""
    cluster = Cluster(tmp_path, None, configs=REPO / "configs")
    cluster.start_hub()
    try:
        cluster.agent("bare", extra=["--gpu-probe", "none", "--gpu-runtime", "none"]).start()
        cluster.agent("ws", "a5500-a400.yaml").start()
        cluster.wait_status({"bare": "ready", "ws": "ready"})
        bare = "llm needs 2 GPUs with 72 GB each; bare has no GPUs"
        ws = ("llm needs 2 GPUs with 72 GB each; ws has none with 72 GB or more"
              " (GPU 0: 24 GB, GPU 1: 4 GB)")  # fmt: skip

        checked = cluster.hubctl("switch", "big-chat", "--all", "--check", "--json")
        found = json.loads(checked.stdout)
        assert found["status"] == "succeeded" and found["check"] is True
        nodes = {n["node"]: n for n in found["nodes"]}
        assert {n: (v["result"], v["message"], v["warnings"]) for n, v in nodes.items()} == {
            "bare": ("changed", "would start big-chat, wait until healthy", [bare]),
            "ws": ("changed", "would start big-chat, wait until healthy", [ws]),
        }

        human = cluster.hubctl("switch", "big-chat", "--node", "ws", "--check")
        assert human.returncode == 0, human.stderr
        after = human.stdout.split("RECAP", 1)[1].splitlines()
        row = next(i for i, line in enumerate(after) if line.strip().startswith("ws "))
        assert "would start big-chat" in after[row]
        assert after[row + 1].split() == ["warning:", *ws.split()]

        shown = cluster.hubctl("ops", "show", found["id"]).stdout
        assert ["warning:", *bare.split()] in [line.split() for line in shown.splitlines()]
        events = cluster.json("ops", "show", found["id"])["events"]
        assert ("bare", "warning", bare) in {(e["node"], e["step"], e["message"]) for e in events}
        # A check changes nothing.
        assert {n["node"]: n["state"] for n in cluster.json("status")} == {
            "bare": "stopped",
            "ws": "stopped",
        }
    finally:
        cluster.close()
