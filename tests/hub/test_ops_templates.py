"""The tasks every node of a switch gets alike are built once per configuration and copied per
node: each node's copy is its own, and another configuration (even of the same name) is never
answered with the first one's task."""

from __future__ import annotations

import dataclasses

from hub.configs import Configuration, load_configuration
from hub.configs_fields import DrainProbe
from hub.ops import remote
from hub.ops.remote import built
from tests.support.procs import REPO

DUAL = load_configuration(REPO / "configs" / "dual-chat.yaml")


def probed(config: Configuration, url: str) -> Configuration:
    """The configuration with its first service's drain probe at `url`."""
    first, *rest = config.services
    assert first.drain is not None
    drain = DrainProbe(url, first.drain.metric, first.drain.timeout_s)
    return dataclasses.replace(config, services=(dataclasses.replace(first, drain=drain), *rest))


def test_each_node_gets_its_own_copy_of_the_configurations_drain() -> None:
    one, _ = built("drain", DUAL, remote._drain)
    two, timeout = built("drain", DUAL, remote._drain)
    one.task_id = "op-1"
    assert two.task_id == "" and one.drain == two.drain
    assert [p.service for p in two.drain.probes] == [s.name for s in DUAL.services if s.drain]
    assert timeout == max(s.drain.timeout_s for s in DUAL.services if s.drain)
    again, _ = built("drain", DUAL, remote._drain)
    assert again.task_id == ""  # the kept template was not touched by a node's copy


def test_another_configuration_of_the_same_name_gets_its_own_task() -> None:
    built("drain", DUAL, remote._drain)
    edited = probed(DUAL, "http://127.0.0.1:9/metrics")
    request, _ = built("drain", edited, remote._drain)
    assert request.drain.probes[0].url == "http://127.0.0.1:9/metrics"
    start, _ = built("start", edited, remote._start)
    assert start.start_project.compose == DUAL.text and start.start_project.project == DUAL.name


def test_the_kept_tasks_stay_few() -> None:
    for port in range(remote.BUILT_KEPT + 5):
        built("drain", probed(DUAL, f"http://127.0.0.1:{port}/metrics"), remote._drain)
    assert len(remote._BUILT) <= remote.BUILT_KEPT
