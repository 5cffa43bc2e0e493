"""Where a scale from zero starts a model: pure, over a snapshot of the nodes.

The model's `gateway.node` when it names one; else a connected node whose agent runs
nothing, that no operation holds and that has the GPUs the model needs (none for llama.cpp
on the cpu backend): first a node whose model cache holds the model's registry entry (a start
there reads no byte over the network), then the one with the most free GPU memory, then by
name. A node that runs something else is never taken: the refusal says what runs where and
what to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hub.models import deploy
from hub.models.schema import Model, RegistrySource
from hub.registry.caches import NodeCaches

MAX_LISTED = 8  # nodes named in a refusal


class NoNode(Exception):
    """No node can take the model now; the line says what runs where and what to do."""


@dataclass(frozen=True)
class Place:
    """A node as placement sees it."""

    node: str
    connected: bool
    runs: str  # the project it runs ("" nothing)
    held: str  # the operation that holds it ("" none)
    gpus: int  # GPUs that are not lost
    free_mb: int  # their memory no process outside gpufleet holds
    cached: bool = False  # its model cache holds the model's registry entry, complete


def cached_on(model: Model, caches: NodeCaches) -> frozenset[str]:
    """The nodes whose model cache holds the model's registry entry complete and verified
    (none for a model from another source)."""
    if not isinstance(model.source, RegistrySource):
        return frozenset()
    return frozenset(node for node, view in caches.holders(model.source.name) if view.usable)


def _runs(project: str) -> str:
    model = deploy.model_of(project)
    return f"model {model}" if model else project


def why_not(place: Place, needed: int) -> str:
    """Why `place` cannot take a model needing `needed` GPUs ("" when it can)."""
    if not place.connected:
        return f"{place.node} is down"
    if place.held:
        return f"{place.node} is in operation {place.held}"
    if place.runs:
        return f"{place.node} runs {_runs(place.runs)}"
    if place.gpus < needed:
        plural = "s" if place.gpus != 1 else ""
        return f"{place.node} has {place.gpus} GPU{plural} ({needed} needed)"
    return ""


def pick(model: str, needed: int, chosen: str | None, places: Sequence[Place]) -> str:
    """The node to start `model` on (needing `needed` GPUs); NoNode when none can take it."""
    if chosen:
        place = next((p for p in places if p.node == chosen), None)
        if place is None:
            raise NoNode(f"model {model}: its gateway.node {chosen} is not a known node: fix "
                         "the model file (`hubctl nodes` lists the nodes)")  # fmt: skip
        why = why_not(place, needed)
        if why:
            raise NoNode(f"model {model} starts on {chosen} (its gateway.node), and {why}: "
                         f"{_fix(place)}")  # fmt: skip
        return chosen
    free = [p for p in places if not why_not(p, needed)]
    if free:
        return min(free, key=lambda p: (not p.cached, -p.free_mb, p.node)).node
    reasons = [why_not(p, needed) for p in sorted(places, key=lambda p: p.node)]
    listed = ", ".join(reasons[:MAX_LISTED]) or "the hub knows no node"
    if len(reasons) > MAX_LISTED:
        listed += f" and {len(reasons) - MAX_LISTED} more"
    raise NoNode(f"model {model}: no free node to start it on ({listed}): stop a model there "
                 "(`hubctl models stop NAME`), add a node, or set gateway.node")  # fmt: skip


def _fix(place: Place) -> str:
    if not place.connected:
        return "start its agent, or change gateway.node"
    if place.held:
        return f"wait for it (`hubctl ops watch {place.held}`)"
    running = deploy.model_of(place.runs)
    if running:
        return f"stop it first (`hubctl models stop {running}`), or change gateway.node"
    if place.runs:
        return "switch it to another configuration, or change gateway.node"
    return "change gateway.node to a node with more GPUs"
