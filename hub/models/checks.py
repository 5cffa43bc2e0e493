"""The small rules model fields are read with: each records its problem and carries on.

`Problems` collects "where: what is wrong; the fix" lines (the caller adds the file). Its
`rename` maps a field's path in our YAML form to the path the operator wrote, so a VLLMModel
document's problems name `spec.maxModelLen`, not `vllm.max_model_len`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Any

from gpufleet.health import show

LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")  # RFC 1123 DNS label
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_TEXT = 1000  # characters of a description; names and parsers are far shorter
MAX_ITEMS = 100  # entries of extra_args, env or aliases
MAX_INT = 10**9


class Problems:
    def __init__(self, rename: Callable[[str], str] | None = None) -> None:
        self.lines: list[str] = []
        self.rename = rename or (lambda where: where)

    def __len__(self) -> int:
        return len(self.lines)

    def add(self, where: str, problem: str) -> None:
        at = self.rename(where)
        self.lines.append(f"{at}: {problem}" if at else problem)


def guess(word: object, choices: tuple[str, ...] | list[str]) -> str | None:
    """The choice `word` is probably a typo of: close spelling, or its snake_case form."""
    text = str(word)
    snake = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", text).lower()
    if snake in choices and snake != text:
        return snake
    close = difflib.get_close_matches(text, choices, n=1)
    return close[0] if close else None


def did_you_mean(word: object, choices: tuple[str, ...] | list[str]) -> str:
    close = guess(word, choices)
    return f" (did you mean {close!r}?)" if close else ""


def mapping(p: Problems, where: str, value: Any, what: str) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        p.add(where, f"must be a mapping with {what}, got {show(value)}")
        return None
    return value


def integer(p: Problems, where: str, value: Any, low: int, high: int = MAX_INT) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
        return value
    bound = f">= {low}" if high == MAX_INT else f"from {low} to {high}"
    p.add(where, f"must be a whole number {bound}, got {show(value)}")
    return None


def number(p: Problems, where: str, value: Any, low: float, high: float, low_ok: bool = False,
           hint: str = "") -> float | None:  # fmt: skip
    """A number in (low, high], or [low, high] when low_ok."""
    valid = isinstance(value, int | float) and not isinstance(value, bool)
    if valid and (low <= value if low_ok else low < value) and value <= high:
        return float(value)
    bound = f"{'>=' if low_ok else '>'} {low:g} and <= {high:g}"
    p.add(where, f"must be a number {bound}, got {show(value)}{hint}")
    return None


def boolean(p: Problems, where: str, value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    p.add(where, f"must be true or false, got {show(value)}")
    return None


def text(p: Problems, where: str, value: Any, pattern: re.Pattern[str] | None = None,
         what: str = "a non-empty string", limit: int = 256) -> str | None:  # fmt: skip
    valid = isinstance(value, str) and value.strip() and len(value) <= limit
    if valid and (pattern is None or pattern.match(value)):
        return str(value)
    p.add(where, f"must be {what}, got {show(value)}")
    return None


def choice(p: Problems, where: str, value: Any, choices: tuple[str, ...]) -> str | None:
    if isinstance(value, str) and value in choices:
        return value
    hint = did_you_mean(value, choices) if isinstance(value, str) else ""
    p.add(where, f"must be {' | '.join(choices)}, got {show(value)}{hint}")
    return None


def label(p: Problems, where: str, value: Any, what: str) -> str | None:
    if isinstance(value, str) and LABEL.match(value):
        return value
    fix = (
        f"use a DNS label as the {what}: 1 to 63 lowercase letters, digits or '-', starting "
        "and ending with a letter or digit"
    )
    if isinstance(value, str) and LABEL.match(value.lower().replace("_", "-").replace(".", "-")):
        fix += f", e.g. {value.lower().replace('_', '-').replace('.', '-')!r}"
    p.add(where, f"{show(value)} is not a valid name: {fix}")
    return None


def strings(p: Problems, where: str, value: Any, what: str) -> tuple[str, ...] | None:
    if not isinstance(value, list) or len(value) > MAX_ITEMS:
        p.add(where, f"must be a list of {what} (at most {MAX_ITEMS}), got {show(value)}")
        return None
    found = []
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item or len(item) > MAX_TEXT:
            p.add(f"{where}[{index}]", f"must be a non-empty string, got {show(item)}")
        else:
            found.append(item)
    return tuple(found) if len(found) == len(value) else None


def environment(p: Problems, where: str, value: Any, reserved: tuple[str, ...],
                why: str) -> tuple[tuple[str, str], ...] | None:  # fmt: skip
    """NAME: value pairs; numbers are written as text, booleans must be quoted."""
    found = mapping(p, where, value, "NAME: value entries")
    if found is None:
        return None
    before = len(p)
    pairs = []
    for key, item in found.items():
        at = f"{where}.{key}"
        if not isinstance(key, str) or not ENV_NAME.match(key):
            p.add(at, "is not an environment variable name: use letters, digits and '_'")
        elif key in reserved:
            p.add(at, why)
        elif isinstance(item, str | int | float) and not isinstance(item, bool):
            pairs.append((key, str(item)))
        else:
            p.add(at, f"must be text or a number (quote true/false: 'true'), got {show(item)}")
    if len(found) > MAX_ITEMS:
        p.add(where, f"has {len(found)} entries: at most {MAX_ITEMS}")
    return tuple(pairs) if len(p) == before else None
