"""The fields of a configuration, checked in full: every problem of a file, one line each.

A parsed YAML document goes through `read(problems, name, data)`, which records each problem
("where: what is wrong; the fix") in `Problems` and carries on with the next field, so an
operator fixes a file in one round instead of one problem per `hubctl configs validate`. A
problem that makes what follows meaningless (the document is not a mapping, a section is not a
mapping) stops only the checks under it. One mistake is one line: an unknown key that looks
like a required one (`vram_gbs`) is reported as the typo, not also as the missing `vram_gb`.

The rules and their wording are gpufleet.health's (the agent reads health sections with them),
and a health section is built by that module once it has no problem, so hub and agent agree.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from gpufleet.health import HEALTH_KEYS, HINTS, HealthCheck, Invalid, show, string, url, whole
from gpufleet.health import health as shared_health
from gpufleet.health import number as _number
from hub import configs_models
from hub.models.schema import Model

T = TypeVar("T")
LATENCY_CLASSES = ("critical", "normal", "background")
METRIC = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
TOP_KEYS = ("description", "use_case", "services")
SERVICE_KEYS = ("vram_gb", "gpu_count", "latency_class", "isolation", "vram_budget", "model",
                "model_ref", "health", "drain")  # fmt: skip
DRAIN_KEYS = ("url", "metric", "timeout")
BUDGET_KEYS = ("min_gb",)


@dataclass(frozen=True)
class DrainProbe:
    url: str
    metric: str
    timeout_s: float = 120


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    vram_gb: float
    health: HealthCheck
    gpu_count: int = 1
    latency_class: str = "normal"
    isolation: bool = False
    vram_budget_min_gb: float | None = None
    model: str = ""
    drain: DrainProbe | None = None
    model_ref: str = ""  # the model definition the service's command is generated from


class Problems:
    """The problems found so far, each "where: what" (the file name is added by the caller)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __len__(self) -> int:
        return len(self.lines)

    def add(self, where: str, problem: str) -> None:
        self.lines.append(str(Invalid(where, problem)))

    def take(self, check: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """`check`'s value, or None with its problem recorded."""
        try:
            return check(*args, **kwargs)
        except Invalid as exc:
            self.lines.append(str(exc))
            return None


def _guess(word: object, choices: list[str] | tuple[str, ...]) -> str | None:
    close = difflib.get_close_matches(str(word), choices, n=1)
    return close[0] if close else None


def fields(p: Problems, where: str, value: Any, allowed: tuple[str, ...],
           required: tuple[str, ...]) -> dict[str, Any] | None:  # fmt: skip
    """The known keys of a mapping (None when it is not one); every unknown key and every
    missing required key is a problem, except a missing key that an unknown one looks like."""
    if not isinstance(value, dict):
        p.add(where, f"must be a mapping with {', '.join(allowed)}, got {show(value)}")
        return None
    guessed = set()
    for key in value:
        if key not in allowed:
            close = _guess(key, allowed)
            hint = f" (did you mean {close!r}?)" if close else ""
            p.add(f"{where}.{key}", f"unknown key{hint}; allowed: {', '.join(allowed)}")
            guessed.add(close)
    for key in required:
        if key not in value and key not in guessed:
            p.add(f"{where}.{key}", f"is required: add {HINTS[key]}")
    return {key: item for key, item in value.items() if key in allowed}


def health(p: Problems, where: str, value: Any) -> HealthCheck | None:
    before = len(p)
    m = fields(p, where, value, HEALTH_KEYS, ("url",))
    if m is None:
        return None
    timeout = p.take(_number, f"{where}.timeout", m.get("timeout", 300))
    interval = p.take(_number, f"{where}.interval", m.get("interval", 5))
    if timeout is not None and interval is not None and interval > timeout:
        p.add(f"{where}.interval", f"must not exceed timeout ({timeout:g}), got {interval:g}")
    if "url" in m:
        p.take(url, f"{where}.url", m["url"])
    p.take(whole, f"{where}.expect_status", m.get("expect_status", 200), 100, 599)
    if len(p) > before:
        return None
    return p.take(shared_health, where, value)  # the agent's reading of the same section


def _drain(p: Problems, where: str, value: Any) -> DrainProbe | None:
    if value is None or value == "none":
        return None
    if not isinstance(value, dict):
        p.add(where, f"must be a mapping with url and metric, or none, got {show(value)}")
        return None
    m = fields(p, where, value, DRAIN_KEYS, ("url", "metric"))
    assert m is not None
    metric = p.take(string, f"{where}.metric", m["metric"]) if "metric" in m else None
    if metric is not None and not METRIC.match(metric):
        p.add(f"{where}.metric", f"must be a Prometheus metric name, got {metric!r}")
        metric = None
    found = p.take(url, f"{where}.url", m["url"]) if "url" in m else None
    timeout = p.take(_number, f"{where}.timeout", m.get("timeout", 120))
    if metric is None or found is None or timeout is None:
        return None
    return DrainProbe(url=found, metric=metric, timeout_s=timeout)


def _budget(p: Problems, where: str, value: Any, vram_gb: float | None) -> float | None:
    budget = fields(p, where, value, BUDGET_KEYS, ("min_gb",))
    if budget is None or "min_gb" not in budget:
        return None
    min_gb = p.take(_number, f"{where}.min_gb", budget["min_gb"])
    if min_gb is not None and vram_gb is not None and min_gb > vram_gb:
        p.add(f"{where}.min_gb", f"must not exceed vram_gb ({vram_gb:g}), got {min_gb:g}")
    return min_gb


def service(p: Problems, name: str, value: Any) -> ServiceSpec | None:
    """One service's x-gpufleet metadata; None when it has a problem (recorded)."""
    where = f"x-gpufleet.services.{name}"
    before = len(p)
    referenced = isinstance(value, dict) and "model_ref" in value  # the model gives defaults
    m = fields(p, where, value, SERVICE_KEYS, () if referenced else ("vram_gb", "health"))
    if m is None:
        return None
    gpu_count = p.take(whole, f"{where}.gpu_count", m.get("gpu_count", 1), 0)
    vram_gb = None
    if "vram_gb" in m:  # a bad gpu_count is its own problem: 0 GB is not one more
        vram_gb = p.take(_number, f"{where}.vram_gb", m["vram_gb"], zero_ok=gpu_count in (0, None))
    latency = m.get("latency_class", "normal")
    if latency not in LATENCY_CLASSES:
        close = _guess(latency, LATENCY_CLASSES) if isinstance(latency, str) else None
        hint = f" (did you mean {close!r}?)" if close else ""
        p.add(f"{where}.latency_class",
              f"must be {' | '.join(LATENCY_CLASSES)}, got {show(latency)}{hint}")  # fmt: skip
    isolation = m.get("isolation", False)
    if not isinstance(isolation, bool):
        p.add(f"{where}.isolation", f"must be true or false, got {show(isolation)}")
    min_gb = None
    if "vram_budget" in m:
        min_gb = _budget(p, f"{where}.vram_budget", m["vram_budget"], vram_gb)
    check = health(p, f"{where}.health", m["health"]) if "health" in m else None
    model = p.take(string, f"{where}.model", m.get("model", ""), empty_ok=True)
    drain = _drain(p, f"{where}.drain", m.get("drain"))
    if len(p) > before or vram_gb is None or check is None:
        return None
    return ServiceSpec(
        name=name, vram_gb=vram_gb, health=check, gpu_count=gpu_count or 0,
        latency_class=latency, isolation=isolation, vram_budget_min_gb=min_gb,
        model=model or "", drain=drain, model_ref=m.get("model_ref", ""),
    )  # fmt: skip


def compose_services(p: Problems, data: dict[str, Any]) -> dict[Any, Any] | None:
    """The compose `services:` mapping (None when there is none), each service checked."""
    services = data.get("services")
    if not isinstance(services, dict) or not services:
        p.add("services", f"must be a non-empty mapping of compose services, got {show(services)}")
        return None
    for name, item in services.items():
        if not isinstance(name, str):
            p.add(f"services.{name}", "service names must be strings")
        elif not isinstance(item, dict) or not (
            isinstance(item.get("image"), str) or "build" in item
        ):
            p.add(f"services.{name}", "needs an image: (a string) or a build: section")
    return services


def _cross_check(p: Problems, services: dict[Any, Any], meta: dict[Any, Any]) -> None:
    """Each metadata entry names a compose service, and each compose service has one."""
    known = ", ".join(map(str, services))
    lacking = [str(key) for key in services if key not in meta]
    suggested = set()
    for key in meta:
        if key in services:
            continue
        close = _guess(key, lacking)
        if close:
            suggested.add(close)
            problem = f"no such service under services: ({known}); did you mean {close!r}? fix it"
        else:
            problem = f"no such service under services: ({known}); fix the name or remove it"
        p.add(f"x-gpufleet.services.{key}", problem)
    for key in services:
        if key not in meta and str(key) not in suggested:
            problem = f"has no metadata: add x-gpufleet.services.{key} with vram_gb and health"
            p.add(f"services.{key}", problem)


@dataclass(frozen=True)
class Found:
    description: str
    use_case: str
    services: tuple[ServiceSpec, ...]  # in compose order
    refs: dict[str, tuple[configs_models.Reference, int]]  # service -> (its model, GPU count)
    meta: dict[str, Any]  # x-gpufleet.services with the models' defaults filled in


def _referenced(
    p: Problems, services: dict[Any, Any] | None, meta: dict[Any, Any],
    models: Mapping[str, Model] | None,
) -> dict[str, configs_models.Reference]:  # fmt: skip
    """Each service's model reference, its metadata's defaults filled in from the model."""
    refs = {}
    for key, value in meta.items():
        if not isinstance(value, dict) or "model_ref" not in value:
            continue
        if "model" in value:
            p.add(f"x-gpufleet.services.{key}.model", "give model or model_ref, not both "
                  "(the model definition names its source): remove model")  # fmt: skip
            continue
        lines: list[str] = []
        compose = (services or {}).get(key)
        ref = configs_models.reference(lines, str(key), value["model_ref"], compose, models)
        p.lines.extend(lines)
        if ref is None:
            continue
        gpus = value.get("gpu_count", 1)
        meta[key], problem = configs_models.defaults(value, ref, gpus if type(gpus) is int else 1)
        if problem:
            p.add(f"x-gpufleet.services.{key}.{problem.partition(': ')[0]}",
                  problem.partition(": ")[2])  # fmt: skip
        refs[str(key)] = ref
    return refs


def read(p: Problems, name: str, data: Any,
         models: Mapping[str, Model] | None = None) -> Found | None:  # fmt: skip
    """The configuration's fields; None when there is a problem."""
    if not isinstance(data, dict):
        p.add("", f"must be a compose file (a mapping with services:), got {show(data)}")
        return None
    before = len(p)
    services = compose_services(p, data)
    if "name" in data and data["name"] != name:
        problem = f"must be {name!r} (the file name) or left out, got {show(data['name'])}"
        p.add("name", problem)
    if "x-gpufleet" not in data:
        p.add("x-gpufleet", "is missing: add it with description, use_case and services")
        return None
    top = fields(p, "x-gpufleet", data["x-gpufleet"], TOP_KEYS, TOP_KEYS)
    if top is None:
        return None
    description = use_case = None
    if "description" in top:
        description = p.take(string, "x-gpufleet.description", top["description"])
    if "use_case" in top:
        use_case = p.take(string, "x-gpufleet.use_case", top["use_case"])
    if "services" not in top:
        return None
    if not isinstance(top["services"], dict):
        p.add("x-gpufleet.services", f"must be {HINTS['services']}, got {show(top['services'])}")
        return None
    meta = dict(top["services"])
    if services is not None:
        _cross_check(p, services, meta)
    refs = _referenced(p, services, meta, models)
    specs = {key: service(p, key, value) for key, value in meta.items()}
    if len(p) > before or services is None or description is None or use_case is None:
        return None
    found = tuple(specs[key] for key in services)
    gpus = {spec.name: spec.gpu_count for spec in found if spec is not None}
    return Found(description, use_case, tuple(spec for spec in found if spec is not None),
                 {key: (ref, gpus[key]) for key, ref in refs.items()}, meta)  # fmt: skip
