"""An environment as plain data: what env.json holds and EnvInfo carries (agent/convert.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

# The one rule for names, shared with the hub and hubctl (re-exported for the agent's modules).
from gpufleet.envnames import BACKENDS as BACKENDS
from gpufleet.envnames import DEFAULT_VERSION as DEFAULT_VERSION
from gpufleet.envnames import check_backend as check_backend
from gpufleet.envnames import check_version as check_version
from gpufleet.envnames import env_name as env_name
from gpufleet.envnames import split_name as split_name

BUILDING, READY, FAILED, BROKEN = "building", "ready", "failed", "broken"
STATES = (BUILDING, READY, FAILED, BROKEN)
COMPILED, CACHE = "compiled", "cache"


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
