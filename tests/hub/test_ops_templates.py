"""The tasks every node of a switch gets alike are built once per configuration and copied per
node: each node's copy is its own, and another configuration (even of the same name) is never
answered with the first one's task."""

from __future__ import annotations

import dataclasses

from hub.configs import Configuration, load_configuration
from hub.configs_fields import DrainProbe
from hub.ops import tasks
from hub.ops.tasks import built
from tests.support.procs import REPO

DUAL = load_configuration(REPO / "configs" / "dual-chat.yaml")


def probed(config: Configuration, url: str) -> Configuration:
    """The configuration with its first service's drain probe at `url`."""
    first, *rest = config.services
    assert first.drain is not None
    drain = DrainProbe(url, first.drain.metric, first.drain.timeout_s)
    return dataclasses.replace(config, services=(dataclasses.replace(first, drain=drain), *rest))


def test_each_node_gets_its_own_copy_of_the_configurations_drain() -> None:
    one, _ = built("drain", DUAL, tasks.drain)
    two, timeout = built("drain", DUAL, tasks.drain)
    one.task_id = "op-1"
    assert two.task_id == "" and one.drain == two.drain
    assert [p.service for p in two.drain.probes] == [s.name for s in DUAL.services if s.drain]
    assert timeout == max(s.drain.timeout_s for s in DUAL.services if s.drain)
    again, _ = built("drain", DUAL, tasks.drain)
    assert again.task_id == ""  # the kept template was not touched by a node's copy


def test_another_configuration_of_the_same_name_gets_its_own_task() -> None:
    built("drain", DUAL, tasks.drain)
    edited = probed(DUAL, "http://127.0.0.1:9/metrics")
    request, _ = built("drain", edited, tasks.drain)
    assert request.drain.probes[0].url == "http://127.0.0.1:9/metrics"
    start, _ = built("start", edited, tasks.start)
    assert start.start_project.compose == DUAL.text and start.start_project.project == DUAL.name


def test_the_kept_tasks_stay_few() -> None:
    for port in range(tasks.BUILT_KEPT + 5):
        built("drain", probed(DUAL, f"http://127.0.0.1:{port}/metrics"), tasks.drain)
    assert len(tasks._BUILT) <= tasks.BUILT_KEPT
