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
          model: org/model                      # optional, informative: the model served
          model_ref: llama31-8b-instruct        # or: a model definition (hub.configs_models)
          health: {url: ..., expect_status: 200, timeout: 300, interval: 5}
          drain: {url: ..., metric: vllm:num_requests_running, timeout: 120}   # or none

URLs may hold compose variables ${NAME} / ${NAME:-default}; they stay unexpanded here (each
agent expands them with its own environment) and are checked with their defaults filled in.

A file is hostile input until parsed: it is refused before parsing when larger than MAX_BYTES
and while parsing when it nests deeper than MAX_DEPTH or when its aliases would expand it past
MAX_NODES nodes (a "billion laughs"): one line, and nothing more is read. Otherwise every
problem of a file is found and reported, one line each (`hub.configs_fields`: the field
rules), so that `hubctl configs validate` lists them all; a directory listing shows each bad
file as one line: its first problem and how many more there are. Parsing is CPU work the hub
runs in a worker (`hub.work`), never on its event loop.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from gpufleet.health import HealthCheck as HealthCheck
from gpufleet.process import ProcessSpec
from hub.configs_fields import LATENCY_CLASSES as LATENCY_CLASSES
from hub.configs_fields import DrainProbe as DrainProbe
from hub.configs_fields import Problems, read
from hub.configs_fields import ServiceSpec as ServiceSpec
from hub.configs_models import generated

if TYPE_CHECKING:
    from hub.models.schema import Model

MAX_BYTES = 256 * 1024  # a compose file is a few KiB; pure-Python YAML parses ~170 KiB/s
MAX_DEPTH = 32  # nesting of mappings and lists (compose files need fewer than 10)
MAX_NODES = 100_000  # scalars, mappings and lists once every alias is expanded
MAX_PROBLEMS = 50  # lines of one file's problems; past them, one line says how many more
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
# Model deployments run as the project "model-NAME" (hub.models.deploy): no file may clash.
RESERVED_PREFIX = "model-"
SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Configuration:
    name: str
    path: Path
    description: str
    use_case: str
    services: tuple[ServiceSpec, ...]
    text: str  # the compose file sent to agents: the file's exact content, or generated from
    # it and the models its services reference (hub.configs_models)
    digest: str  # sha256 hex of text: tells whether a running project is this configuration
    # Set for a host process project (a llama.cpp model deployment, hub.models.deploy): the
    # agent runs this process instead of a compose file; text is its canonical text.
    process: ProcessSpec | None = None


class ProblemsError(ValueError):
    """Each problem of a file is one line: the file, where in it, what is wrong and how to fix
    it. str() is every line, joined by newlines (one line for most). `command` is what shows
    them all (`summary`)."""

    command = "hubctl configs validate"

    def __init__(self, *problems: str) -> None:
        super().__init__(*(" ".join(str(p).splitlines()) for p in problems))

    @property
    def problems(self) -> tuple[str, ...]:
        return tuple(str(line) for line in self.args)

    def __str__(self) -> str:
        return "\n".join(self.problems)

    def summary(self, path: Path) -> str:
        """One line: the first problem, and how to see the others."""
        first, *more = self.problems or ("",)
        return f"{first} ({len(more)} more: {self.command} {path})" if more else first


class ConfigError(ProblemsError):
    """A configuration file's problems: service and field in each line."""


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise ConfigError(
            f"configuration name {str(name)[:80]!r} is invalid: use 1 to 63 lowercase letters,"
            " digits, '-' or '_', starting with a letter or digit"
        )
    if name.startswith(RESERVED_PREFIX):
        raise ConfigError(
            f"configuration name {name!r} is reserved: names starting with {RESERVED_PREFIX!r} "
            "are the projects of model deployments (`hubctl models switch`)"
        )
    return name


class TooComplex(Exception):
    pass


class BoundedLoader(yaml.SafeLoader):
    """The safe loader, refusing deep nesting while composing (before Python's recursion limit)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.depth >= MAX_DEPTH:
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise TooComplex(
                f"nests deeper than {MAX_DEPTH} levels at line {mark.line + 1}: flatten it"
            )
        self.depth += 1
        try:
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self.depth -= 1


def expanded(node: yaml.Node, sizes: dict[int, int]) -> int:
    """Nodes under `node` once aliases are expanded (shared nodes counted once per use)."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    total = 1
    if isinstance(node, yaml.SequenceNode):
        total += sum(expanded(child, sizes) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        total += sum(expanded(k, sizes) + expanded(v, sizes) for k, v in node.value)
    sizes[id(node)] = total = min(total, MAX_NODES + 1)
    return total


def _load_yaml(text: str) -> Any:
    loader = BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if expanded(node, {}) > MAX_NODES:
            raise TooComplex(
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


def parse_configuration(name: str, text: str, path: Path,
                        models: dict[str, Model] | None = None) -> Configuration:  # fmt: skip
    """The configuration, or ConfigError with every problem of the file (a file refused as
    hostile input, or that is not YAML, has that one line only). `models`: the definitions a
    service's model_ref may name (None: no models directory)."""
    problems = Problems()
    try:
        check_name(name)
    except ConfigError as exc:
        problems.lines.append(f"{exc}; rename the file")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 (at {exc.start}); save it as UTF-8") from None
    if size > MAX_BYTES:
        raise ConfigError(_too_large(path, size))
    try:
        data = _load_yaml(text)
    except TooComplex as exc:
        raise ConfigError(f"{path}: refused: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: refused: nests too deeply: flatten it") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: invalid YAML{at}: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    found = read(problems, name, data, models)
    if found is None or problems.lines:
        lines = [f"{path}: {line}" for line in problems.lines[:MAX_PROBLEMS]]
        if len(problems) > MAX_PROBLEMS:
            more = len(problems) - MAX_PROBLEMS
            lines.append(f"{path}: {more} more problems not shown: fix the ones above first")
        raise ConfigError(*lines)
    sent = generated(name, data, found.refs, found.meta) if found.refs else text
    digest = hashlib.sha256(sent.encode()).hexdigest()
    return Configuration(name, path, found.description, found.use_case, found.services, sent,
                         digest)  # fmt: skip


def load_models(directory: Path | None) -> dict[str, Model] | None:
    """The models directory's valid models (None without one); a bad model file only makes
    the configurations referencing its models fail, with `model ... not found`."""
    from hub.models.load import ModelError  # hub.models.load imports this module
    from hub.models.load import load_directory as load_model_directory

    if directory is None:
        return None
    try:
        return load_model_directory(directory)[0]
    except ModelError:
        return None


def read_bounded(path: Path, error: type[ProblemsError], too_large: Callable[[Path], str]) -> str:
    """A file's text, never more than MAX_BYTES into memory; unreadable, too large or not
    UTF-8 is `error` with one line (shared by configurations and model definitions)."""
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_BYTES + 1)
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_BYTES:
        raise error(too_large(path))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 (byte {exc.start}); save it as UTF-8") from None


def load_configuration(path: Path, models: dict[str, Model] | None = None) -> Configuration:
    text = read_bounded(path, ConfigError, _too_large)
    return parse_configuration(path.stem, text, path, models)


def load_directory(
    directory: Path, models_dir: Path | None = None
) -> tuple[dict[str, Configuration], list[ConfigError]]:
    """Every valid configuration by name, plus one error per invalid file (both by name);
    model references resolve against `models_dir`, read in the same call."""
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
    models = load_models(models_dir)
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
            configs[path.stem] = load_configuration(path, models)
        except ConfigError as exc:  # one line per file: the first problem, and how many more
            errors.append(ConfigError(exc.summary(path)))
        except (MemoryError, RecursionError, ValueError, TypeError) as exc:  # contained: one line
            errors.append(ConfigError(f"{path}: cannot be loaded ({type(exc).__name__}: {exc})"))
    return configs, errors
