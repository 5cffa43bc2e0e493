"""An environment as plain data: what env.json holds and EnvInfo carries (agent/convert.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from gpufleet.process import ENVIRONMENTS

# The llama-cpp-python version this agent builds when the hub names none.
DEFAULT_VERSION = "0.3.36"
BACKENDS = ENVIRONMENTS  # cuda, vulkan, rocm, cpu
BUILDING, READY, FAILED, BROKEN = "building", "ready", "failed", "broken"
STATES = (BUILDING, READY, FAILED, BROKEN)
COMPILED, CACHE = "compiled", "cache"
_VERSION = re.compile(r"^[0-9][0-9A-Za-z.+!-]{0,40}$")


def env_name(backend: str, version: str) -> str:
    return f"{backend}-{version}"


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend[:32]!r} is not one of {', '.join(BACKENDS)}")
    return backend


def check_version(version: str) -> str:
    if not _VERSION.match(version):
        raise ValueError(f"llama-cpp-python version {version[:48]!r} is not a version, e.g. "
                         f"{DEFAULT_VERSION}")  # fmt: skip
    return version


def split_name(name: str) -> tuple[str, str]:
    """ "vulkan-0.3.36" -> ("vulkan", "0.3.36"); ValueError for anything else."""
    backend, sep, version = name.partition("-")
    if not sep:
        raise ValueError(f"environment {name[:64]!r} is not BACKEND-VERSION, e.g. "
                         f"vulkan-{DEFAULT_VERSION}")  # fmt: skip
    return check_backend(backend), check_version(version)


@dataclass(frozen=True)
class EnvRecord:
    name: str
    backend: str
    version: str
    state: str
    message: str = ""
    gpu_offload: bool = False
    devices: tuple[str, ...] = ()
    size_bytes: int = 0
    built_at: float = 0.0  # Unix time; 0: not built
    origin: str = ""  # compiled | cache
    key: str = ""
    system_info: str = ""

    def with_(self, **changes: Any) -> EnvRecord:
        return replace(self, **changes)

    def to_json(self) -> str:
        found = asdict(self)
        found["devices"] = list(self.devices)
        return json.dumps(found, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> EnvRecord:
        """ValueError for what is not an env.json this agent wrote."""
        try:
            data = json.loads(text)
            known = {f.name for f in fields(cls)}
            found = {k: v for k, v in dict(data).items() if k in known}
            found["devices"] = tuple(str(d) for d in found.get("devices", ()))
            record = cls(**found)
        except (TypeError, AttributeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not an environment record: {exc}") from None
        if record.state not in STATES:
            raise ValueError(f"unknown environment state {record.state!r}")
        return record


def new_record(backend: str, version: str) -> EnvRecord:
    return EnvRecord(env_name(backend, version), backend, version, BUILDING, "preflight")


@dataclass(frozen=True)
class WheelInfo:
    key: str
    filename: str
    size: int
    sha256: str
    parts: Mapping[str, str] = field(default_factory=dict)
    built_on: str = ""
    built_at: float = 0.0  # Unix time
