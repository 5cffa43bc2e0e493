"""The rules a configuration's `x-gpufleet` fields are read with, shared by the hub
(hub/configs.py, which validates whole configurations) and the agent (agent/health.py, which
reads the health checks of the projects it runs from the compose file it stores), so both
read a health section the same way.

    health: {url: http://127.0.0.1:${PORT:-8000}/health, expect_status: 200, timeout: 300,
             interval: 5}

URLs may hold compose variables ${NAME} / ${NAME:-default}; they are checked with their
defaults filled in and stay unexpanded (each agent expands them with its own environment).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}")
HEALTH_KEYS = ("url", "expect_status", "timeout", "interval")
HINTS = {
    "description": "a one-line summary",
    "use_case": "a short phrase such as 'Maximum quality chat'",
    "services": "a mapping from each compose service name to its metadata",
    "vram_gb": "the VRAM estimate per GPU in GiB, e.g. 24",
    "health": "a mapping with at least url: http://127.0.0.1:PORT/health",
    "url": "an http(s) URL",
    "metric": "a Prometheus metric such as vllm:num_requests_running",
    "min_gb": "the least VRAM in GiB the service can run with",
}


@dataclass(frozen=True)
class HealthCheck:
    url: str
    expect_status: int = 200
    timeout_s: float = 300
    interval_s: float = 5
    # Set: the answer must also be an OpenAI model list naming this id (a model deployment's
    # check on /v1/models); not a configuration field.
    expect_model: str = ""


class Invalid(Exception):
    """Where in the file (a dotted path) and what is wrong there."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}" if where else problem)


def show(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict | list):
        kind = "mapping" if isinstance(value, dict) else "list"
        return f"a {kind}" if value else f"an empty {kind}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def fields(where: str, value: Any, allowed: tuple[str, ...], required: tuple[str, ...]
           ) -> dict[str, Any]:  # fmt: skip
    """A mapping with no unknown keys (typos) and every required key."""
    if not isinstance(value, dict):
        raise Invalid(where, f"must be a mapping with {', '.join(allowed)}, got {show(value)}")
    for key in value:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise Invalid(f"{where}.{key}", f"unknown key{hint}; allowed: {', '.join(allowed)}")
    for key in required:
        if key not in value:
            raise Invalid(f"{where}.{key}", f"is required: add {HINTS[key]}")
    return value


def string(where: str, value: Any, empty_ok: bool = False) -> str:
    if not isinstance(value, str) or not (empty_ok or value.strip()):
        raise Invalid(
            where, f"must be a {'' if empty_ok else 'non-empty '}string, got {show(value)}"
        )
    return value


MAX_NUMBER = 1e9  # no timeout, interval or size of a configuration is larger


def number(where: str, value: Any, zero_ok: bool = False) -> float:
    valid = isinstance(value, int | float) and not isinstance(value, bool)
    # Compared, never converted first: math.isfinite(10**400) raises OverflowError.
    if not valid or not (0 <= value <= MAX_NUMBER) or (value == 0 and not zero_ok):
        raise Invalid(where, f"must be a number {'>=' if zero_ok else '>'} 0, got {show(value)}")
    return float(value)


def whole(where: str, value: Any, low: int, high: int | None = None) -> int:
    valid = isinstance(value, int) and not isinstance(value, bool)
    if not valid or value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"from {low} to {high}"
        raise Invalid(where, f"must be a whole number {bounds}, got {show(value)}")
    return int(value)


def url(where: str, value: Any) -> str:
    found = string(where, value)
    resolved = VARIABLE.sub(lambda m: m.group("default") or "1", found)
    if "${" in resolved:
        raise Invalid(where, f"use variables as ${{NAME}} or ${{NAME:-default}}, got {found!r}")
    try:
        parts = urlsplit(resolved)
        port_ok = parts.port is None or parts.port > 0  # .port raises on a malformed port
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and port_ok
    except ValueError:
        valid = False
    if not valid:
        raise Invalid(where, f"must be an http:// or https:// URL with a host, got {found!r}")
    return found


def health(where: str, value: Any) -> HealthCheck:
    """One service's `health` section."""
    m = fields(where, value, HEALTH_KEYS, ("url",))
    timeout = number(f"{where}.timeout", m.get("timeout", 300))
    interval = number(f"{where}.interval", m.get("interval", 5))
    if interval > timeout:
        raise Invalid(
            f"{where}.interval", f"must not exceed timeout ({timeout:g}), got {interval:g}"
        )
    return HealthCheck(
        url=url(f"{where}.url", m["url"]),
        expect_status=whole(f"{where}.expect_status", m.get("expect_status", 200), 100, 599),
        timeout_s=timeout,
        interval_s=interval,
    )


def compose_checks(document: Any) -> dict[str, HealthCheck]:
    """Every service's health check from a compose document's x-gpufleet section (the agent
    reads the file it stores with this); Invalid when the section is missing or wrong."""
    if not isinstance(document, dict) or not isinstance(document.get("x-gpufleet"), dict):
        raise Invalid("x-gpufleet", "is missing: the configuration declares no health checks")
    services = document["x-gpufleet"].get("services")
    if not isinstance(services, dict):
        raise Invalid("x-gpufleet.services", f"must be {HINTS['services']}, got {show(services)}")
    found = {}
    for name, meta in services.items():
        where = f"x-gpufleet.services.{name}"
        if not isinstance(meta, dict) or "health" not in meta:
            raise Invalid(f"{where}.health", f"is required: add {HINTS['health']}")
        found[str(name)] = health(f"{where}.health", meta["health"])
    return found
