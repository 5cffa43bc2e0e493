"""Which nodes an assignment plans over: named ones (`--node`), label selectors (`-l`), or
every connected node; the same rules as switch, drain and stop (hub.selection)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from gpufleet.selectors import SelectorError, parse
from hub.assign.model import AssignError
from hub.selection import Known, NoMatch, targeted


def choose(
    names: Sequence[str],
    selector: Sequence[str],
    labels: Mapping[str, Mapping[str, str]],
    connected: Collection[str],
) -> list[str]:
    """The nodes to plan over. `labels`: every known node's labels. Named nodes must be known
    (and match the selector, when there is one); none named: the connected ones (that match).
    A bad selector, or one that matches no node, is refused with one line."""
    try:
        chosen = parse(selector)
    except SelectorError as exc:
        raise AssignError("invalid", str(exc)) from None
    unknown = [n for n in names if n not in labels]
    if unknown:
        raise AssignError(
            "not_found", f"unknown node {', '.join(unknown)}: `hubctl nodes` lists the known nodes"
        )
    if not chosen:
        return list(dict.fromkeys(names)) or sorted(connected)
    known = [Known(name, name in connected, dict(found)) for name, found in labels.items()]
    try:
        return list(dict.fromkeys(targeted(names, False, chosen, known)))
    except NoMatch as exc:
        raise AssignError("invalid", str(exc)) from None
