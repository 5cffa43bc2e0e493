"""Label selectors, as kubectl and Nomad users write them: `role=chat`, `zone!=b`, `gpu`, `!spot`.

One parser and one matcher, shared by hubctl (to refuse a bad selector before calling) and the
hub (to filter nodes). A selector is a list of requirements, all of which must hold; each item
may hold several, comma-separated (`-l role=chat,zone!=b` is `-l role=chat -l zone!=b`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

MAX_REQUIREMENTS = 64
KEY_CHARS = 63
VALUE_CHARS = 253
# Label keys as hubctl and agents accept them: letters, digits, '-', '_', '.', '/'.
KEY = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._/-]*[A-Za-z0-9])?")
VALUE = re.compile(r"[A-Za-z0-9._:/+@-]*")
OPERATORS = ("==", "!=", "=")


class SelectorError(ValueError):
    """A selector that cannot be read; the message names the item and the fix."""


@dataclass(frozen=True)
class Requirement:
    key: str
    # "=": equal; "!=": not equal or absent; "exists"; "absent".
    op: str
    value: str = ""

    def holds(self, labels: Mapping[str, str]) -> bool:
        found = labels.get(self.key)
        if self.op == "=":
            return found == self.value
        if self.op == "!=":
            return found != self.value
        if self.op == "exists":
            return found is not None
        return found is None

    def __str__(self) -> str:
        if self.op == "exists":
            return self.key
        if self.op == "absent":
            return f"!{self.key}"
        return f"{self.key}{self.op}{self.value}"


def _requirement(item: str) -> Requirement:
    hint = "expected KEY=VALUE, KEY!=VALUE, KEY or !KEY (e.g. -l role=chat)"
    if item.startswith("!") and not any(op in item for op in OPERATORS):
        key, op, value = item[1:].strip(), "absent", ""
    else:
        for sep in OPERATORS:
            key, found, value = item.partition(sep)
            if found:
                key, op, value = key.strip(), "=" if sep == "==" else sep, value.strip()
                break
        else:
            key, op, value = item.strip(), "exists", ""
    if len(key) > KEY_CHARS or not KEY.fullmatch(key):
        raise SelectorError(f"invalid label selector {item!r}: {hint}")
    if len(value) > VALUE_CHARS or not VALUE.fullmatch(value) or any(op in value for op in "=!"):
        raise SelectorError(f"invalid label selector {item!r}: {hint}")
    return Requirement(key, op, value)


def parse(items: Iterable[str]) -> tuple[Requirement, ...]:
    """Every requirement in `items` (each may hold several, comma-separated)."""
    found: list[Requirement] = []
    for item in items:
        for part in item.split(","):
            if part.strip():
                found.append(_requirement(part.strip()))
            elif item.strip():
                raise SelectorError(
                    f"invalid label selector {item!r}: an empty item between commas"
                )
    if len(found) > MAX_REQUIREMENTS:
        raise SelectorError(
            f"{len(found)} label selectors: at most {MAX_REQUIREMENTS}; select by fewer labels"
        )
    return tuple(found)


def matches(selector: Iterable[Requirement], labels: Mapping[str, str]) -> bool:
    return all(requirement.holds(labels) for requirement in selector)


def describe(selector: Iterable[Requirement]) -> str:
    """`role=chat,zone!=b`: how a message names a selector."""
    return ",".join(str(requirement) for requirement in selector)
