"""Configurations: named compose projects, one compose file each in a configurations directory.

The name is the file stem (configs/big-chat.yaml -> "big-chat"); only top-level *.yaml / *.yml
files count. gpufleet's metadata lives in the compose file under the extension key `x-gpufleet`,
so the file stays a valid compose file and the single source of truth:

    x-gpufleet:
      description: str            use_case: str
      services:
        SERVICE:                  # must name a service under `services:`, and vice versa
          vram_gb: 38.5           # VRAM estimate per GPU, GiB, > 0 (may be 0 with gpu_count 0)
          gpu_count: 1            # GPUs on one node (tensor parallel), int >= 0
          latency_class: normal   # critical | normal | background
          isolation: false        # wants a GPU of its own
          vram_budget: {min_gb: 3.5}            # optional: the service can shrink to this
          model: org/model                      # optional model reference
          health: {url: ..., expect_status: 200, timeout: 300, interval: 5}
          drain: {url: ..., metric: vllm:num_requests_running, timeout: 120}   # or none

URLs may hold compose variables ${NAME} / ${NAME:-default}; they stay unexpanded here (each
agent expands them with its own environment) and are checked with their defaults filled in.

A file is hostile input until parsed: it is refused before parsing when larger than MAX_BYTES
and while parsing when it nests deeper than MAX_DEPTH or when its aliases would expand it past
MAX_NODES nodes (a "billion laughs"). Each bad file is one error line of its own, whatever
went wrong; parsing is CPU work the hub runs in a worker (`hub.work`), never on its event loop.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# The field rules are gpufleet.health's: the agent reads health sections with them too.
from gpufleet.health import HINTS
from gpufleet.health import HealthCheck as HealthCheck
from gpufleet.health import Invalid as _Invalid
from gpufleet.health import fields as _fields
from gpufleet.health import health as _health
from gpufleet.health import number as _number
from gpufleet.health import show as _show
from gpufleet.health import string as _string
from gpufleet.health import url as _url
from gpufleet.health import whole as _int

MAX_BYTES = 256 * 1024  # a compose file is a few KiB; pure-Python YAML parses ~170 KiB/s
MAX_DEPTH = 32  # nesting of mappings and lists (compose files need fewer than 10)
MAX_NODES = 100_000  # scalars, mappings and lists once every alias is expanded
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
LATENCY_CLASSES = ("critical", "normal", "background")
METRIC = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
SUFFIXES = (".yaml", ".yml")

TOP_KEYS = ("description", "use_case", "services")
SERVICE_KEYS = ("vram_gb", "gpu_count", "latency_class", "isolation", "vram_budget", "model",
                "health", "drain")  # fmt: skip
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


@dataclass(frozen=True)
class Configuration:
    name: str
    path: Path
    description: str
    use_case: str
    services: tuple[ServiceSpec, ...]
    text: str  # the file's exact content, sent to agents as the compose file
    digest: str  # sha256 hex of text: tells whether a running project is this configuration


class ConfigError(ValueError):
    """One line: the file, where in it (service and field), what is wrong and how to fix it."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.splitlines()))


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise ConfigError(
            f"configuration name {str(name)[:80]!r} is invalid: use 1 to 63 lowercase letters,"
            " digits, '-' or '_', starting with a letter or digit"
        )
    return name


def _drain(where: str, value: Any) -> DrainProbe | None:
    if value is None or value == "none":
        return None
    if not isinstance(value, dict):
        raise _Invalid(where, f"must be a mapping with url and metric, or none, got {_show(value)}")
    m = _fields(where, value, DRAIN_KEYS, ("url", "metric"))
    metric = _string(f"{where}.metric", m["metric"])
    if not METRIC.match(metric):
        raise _Invalid(f"{where}.metric", f"must be a Prometheus metric name, got {metric!r}")
    return DrainProbe(
        url=_url(f"{where}.url", m["url"]),
        metric=metric,
        timeout_s=_number(f"{where}.timeout", m.get("timeout", 120)),
    )


def _service(name: str, value: Any) -> ServiceSpec:
    where = f"x-gpufleet.services.{name}"
    m = _fields(where, value, SERVICE_KEYS, ("vram_gb", "health"))
    gpu_count = _int(f"{where}.gpu_count", m.get("gpu_count", 1), 0)
    vram_gb = _number(f"{where}.vram_gb", m["vram_gb"], zero_ok=gpu_count == 0)
    latency = m.get("latency_class", "normal")
    if latency not in LATENCY_CLASSES:
        choices = " | ".join(LATENCY_CLASSES)
        raise _Invalid(f"{where}.latency_class", f"must be {choices}, got {_show(latency)}")
    isolation = m.get("isolation", False)
    if not isinstance(isolation, bool):
        raise _Invalid(f"{where}.isolation", f"must be true or false, got {_show(isolation)}")
    min_gb = None
    if "vram_budget" in m:
        budget = _fields(f"{where}.vram_budget", m["vram_budget"], BUDGET_KEYS, ("min_gb",))
        min_gb = _number(f"{where}.vram_budget.min_gb", budget["min_gb"])
        if min_gb > vram_gb:
            problem = f"must not exceed vram_gb ({vram_gb:g}), got {min_gb:g}"
            raise _Invalid(f"{where}.vram_budget.min_gb", problem)
    return ServiceSpec(
        name=name,
        vram_gb=vram_gb,
        health=_health(f"{where}.health", m["health"]),
        gpu_count=gpu_count,
        latency_class=latency,
        isolation=isolation,
        vram_budget_min_gb=min_gb,
        model=_string(f"{where}.model", m.get("model", ""), empty_ok=True),
        drain=_drain(f"{where}.drain", m.get("drain")),
    )


def _compose_services(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise _Invalid("", f"must be a compose file (a mapping with services:), got {_show(data)}")
    services = data.get("services")
    if not isinstance(services, dict) or not services:
        problem = f"must be a non-empty mapping of compose services, got {_show(services)}"
        raise _Invalid("services", problem)
    for name, service in services.items():
        if not isinstance(name, str):
            raise _Invalid(f"services.{name}", "service names must be strings")
        if not isinstance(service, dict) or not (
            isinstance(service.get("image"), str) or "build" in service
        ):
            raise _Invalid(f"services.{name}", "needs an image: (a string) or a build: section")
    return services


def _parse(name: str, data: Any) -> tuple[str, str, tuple[ServiceSpec, ...]]:
    services = _compose_services(data)
    if "name" in data and data["name"] != name:
        problem = f"must be {name!r} (the file name) or left out, got {_show(data['name'])}"
        raise _Invalid("name", problem)
    if "x-gpufleet" not in data:
        raise _Invalid("x-gpufleet", "is missing: add it with description, use_case and services")
    top = _fields("x-gpufleet", data["x-gpufleet"], TOP_KEYS, TOP_KEYS)
    description = _string("x-gpufleet.description", top["description"])
    use_case = _string("x-gpufleet.use_case", top["use_case"])
    meta = top["services"]
    if not isinstance(meta, dict):
        raise _Invalid("x-gpufleet.services", f"must be {HINTS['services']}, got {_show(meta)}")
    for key in meta:
        if key not in services:
            known = ", ".join(map(str, services))
            problem = f"no such service under services: ({known}); fix the name or remove it"
            raise _Invalid(f"x-gpufleet.services.{key}", problem)
    for key in services:
        if key not in meta:
            problem = f"has no metadata: add x-gpufleet.services.{key} with vram_gb and health"
            raise _Invalid(f"services.{key}", problem)
    return description, use_case, tuple(_service(key, meta[key]) for key in services)


class _TooComplex(Exception):
    pass


class _BoundedLoader(yaml.SafeLoader):
    """The safe loader, refusing deep nesting while composing (before Python's recursion limit)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.depth >= MAX_DEPTH:
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise _TooComplex(
                f"nests deeper than {MAX_DEPTH} levels at line {mark.line + 1}: flatten it"
            )
        self.depth += 1
        try:
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self.depth -= 1


def _expanded(node: yaml.Node, sizes: dict[int, int]) -> int:
    """Nodes under `node` once aliases are expanded (shared nodes counted once per use)."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    total = 1
    if isinstance(node, yaml.SequenceNode):
        total += sum(_expanded(child, sizes) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        total += sum(_expanded(k, sizes) + _expanded(v, sizes) for k, v in node.value)
    sizes[id(node)] = total = min(total, MAX_NODES + 1)
    return total


def _load_yaml(text: str) -> Any:
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded(node, {}) > MAX_NODES:
            raise _TooComplex(
                f"expands to more than {MAX_NODES:,} values through its aliases (*name): "
                "write the values out instead of nesting aliases"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _too_large(path: Path, size: int | None = None) -> str:
    what = f"{size:,} bytes, larger" if size is not None else "larger"
    return (
        f"{path}: refused: {what} than the {MAX_BYTES // 1024} KiB a configuration may have: "
        "move bulky content (scripts, data) into the image or a mounted file"
    )


def parse_configuration(name: str, text: str, path: Path) -> Configuration:
    try:
        check_name(name)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}; rename the file") from None
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 (at {exc.start}); save it as UTF-8") from None
    if size > MAX_BYTES:
        raise ConfigError(_too_large(path, size))
    try:
        data = _load_yaml(text)
    except _TooComplex as exc:
        raise ConfigError(f"{path}: refused: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: refused: nests too deeply: flatten it") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: invalid YAML{at}: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    try:
        description, use_case, services = _parse(name, data)
    except _Invalid as exc:
        raise ConfigError(f"{path}: {exc}") from None
    digest = hashlib.sha256(text.encode()).hexdigest()
    return Configuration(name, path, description, use_case, services, text, digest)


def load_configuration(path: Path) -> Configuration:
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_BYTES + 1)  # never more than the limit into memory
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(_too_large(path))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 (byte {exc.start}); save it as UTF-8") from None
    return parse_configuration(path.stem, text, path)


def load_directory(directory: Path) -> tuple[dict[str, Configuration], list[ConfigError]]:
    """Every valid configuration by name, plus one error per invalid file (both by name)."""
    if not directory.is_dir():
        raise ConfigError(f"{directory}: no such configurations directory; pass --configs DIR")
    try:
        files = sorted(
            (p for p in directory.iterdir() if p.suffix in SUFFIXES and not p.name.startswith(".")),
            key=lambda p: (p.stem, p.suffix),
        )
        files = [p for p in files if p.is_file()]
    except OSError as exc:
        raise ConfigError(f"{directory}: cannot list: {exc.strerror or exc}") from None
    configs: dict[str, Configuration] = {}
    errors: list[ConfigError] = []
    seen: dict[str, Path] = {}
    for path in files:
        if path.stem in seen:
            problem = f"{seen[path.stem].name} already defines {path.stem!r}; keep one of the two"
            errors.append(ConfigError(f"{path}: {problem}"))
            continue
        seen[path.stem] = path
        try:
            configs[path.stem] = load_configuration(path)
        except ConfigError as exc:
            errors.append(exc)
        except (MemoryError, RecursionError, ValueError, TypeError) as exc:  # contained: one line
            errors.append(ConfigError(f"{path}: cannot be loaded ({type(exc).__name__}: {exc})"))
    return configs, errors
