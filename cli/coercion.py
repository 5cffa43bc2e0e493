"""Plain option values without pydantic: most of what `hubctl nodes` would spend otherwise.

Typer (0.2x) converts every non-flag value through a pydantic TypeAdapter that it builds on
first use: ~90 ms of imports in each hubctl process, even for `--hub` left at its default.
`install()` converts the values hubctl's fast commands take (None, str, repeated str, and int
or float within their min/max) directly; any other value (lists, paths, anything out of range or
malformed) goes through Typer's own conversion, so results and error messages are Typer's.
Should Typer's internals change shape, nothing is patched and hubctl is only slower.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

INTEGER = re.compile(r"[+-]?\d+")
DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
SLOW = object()  # not a plain value: Typer converts it
LARGEST = 2**31 - 1


def plain(annotation: Any, info: Any, value: Any, multiple: bool) -> Any:
    """`value` converted for `annotation`, or SLOW."""
    if value is None:
        return () if multiple else None
    if info.parser is not None or info.clamp:
        return SLOW
    if multiple:  # repeated text options (--node a --node b, -l role=chat): as Typer gives them
        plain_text = annotation == list[str] and isinstance(value, (list, tuple))
        return list(value) if plain_text and all(isinstance(v, str) for v in value) else SLOW
    if annotation is str:
        return value if isinstance(value, str) else SLOW
    if annotation not in (int, float):
        return SLOW
    if isinstance(value, str):
        if not (INTEGER if annotation is int else DECIMAL).fullmatch(value):
            return SLOW
        number = annotation(value)
    elif type(value) is annotation:
        number = value
    else:
        return SLOW
    low, high = info.min, info.max
    if (low is not None and number < low) or (high is not None and number > high):
        return SLOW  # Typer's message says why
    return number


class Coercion:
    """Duck-types Typer's RuntimeParam: plain values here, the rest through `slow`."""

    def __init__(self, slow: Callable[[], Any]) -> None:
        self.slow = slow

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        try:
            descriptor = param.type_descriptor
            multiple = bool(param.multiple or param.nargs == -1)
            found = plain(descriptor.annotation, descriptor.parameter_info, value, multiple)
        except AttributeError:  # another Typer: its own conversion
            found = SLOW
        found = self.slow().coerce(value, param=param, ctx=ctx) if found is SLOW else found
        for number in found if isinstance(found, (list, tuple)) else (found,):
            problem = out_of_range(number)
            if problem:
                raise bad_parameter(problem, param, ctx)
        return found


def out_of_range(value: Any) -> str | None:
    """What no hubctl number may be, whatever its option says: beyond 32 bits (the wire's
    integers), NaN or infinite."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and not -LARGEST <= value <= LARGEST:
        return f"{value} is out of range: at most {LARGEST}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} is not a finite number"
    return None


def bad_parameter(message: str, param: Any, ctx: Any) -> Exception:
    """Click's BadParameter from the click Typer uses (its own copy, or click itself)."""
    import importlib

    try:
        module = importlib.import_module("typer._click.exceptions")
    except ImportError:  # a Typer that uses click itself
        module = importlib.import_module("click.exceptions")
    error: Exception = module.BadParameter(message, ctx=ctx, param=param)
    return error


def install() -> None:
    try:
        from typer.core import _TyperParameter
    except ImportError:
        return
    slow = getattr(_TyperParameter, "get_runtime_param", None)
    if slow is None:
        return

    def get_runtime_param(self: Any) -> Coercion:
        return Coercion(lambda: slow(self))

    setattr(_TyperParameter, "get_runtime_param", get_runtime_param)  # noqa: B010
