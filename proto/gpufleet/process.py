"""A host process project: one supervised process an agent runs instead of a compose project (a
llama.cpp model server, `python -m llama_cpp.server ...` from a llama-cpp-python environment).

Shared by the hub (which generates it from a model definition and sends it in StartProject) and
the agent (which stores, starts and adopts it), so both compute the same canonical text and
digest: the digest tells whether a running process is this definition, as a compose file's
sha256 does for a compose project.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from gpufleet.envnames import BACKENDS, VERSION
from gpufleet.health import HealthCheck

ENVIRONMENTS = BACKENDS
# A backend (the agent picks its environment) or one environment, BACKEND-VERSION.
ENVIRONMENT = re.compile(rf"^({'|'.join(BACKENDS)})(-{VERSION.pattern})?$")
# What a host process runs: the llama-cpp-python server module, nothing else (the agent runs it
# as root; the hub sends a model's server, never a command).
MODULE = ("-m", "llama_cpp.server")
# Variables that would make the interpreter or the dynamic loader run code from a path (a file
# a container could have written into a volume): refused from the hub. A host that needs one
# sets it in the agent's own environment, which the server inherits.
REFUSED_ENV = re.compile(r"^(LD_.*|DYLD_.*|PYTHON.*|.*_PRELOAD|PATH|GCONV_PATH|BASH_ENV|ENV)$")


class ProcessSpecError(ValueError):
    pass


@dataclass(frozen=True)
class ProcessSpec:
    service: str  # the one service of its project, e.g. "server"
    environment: str  # a llama-cpp-python backend: the agent maps it to an environment dir
    args: tuple[str, ...]  # after the environment's python: -m llama_cpp.server --model=...
    env: tuple[tuple[str, str], ...] = ()  # sorted by key; added to the agent's environment
    health: HealthCheck | None = None  # what the agent's health monitor polls

    def as_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "service": self.service,
            "environment": self.environment,
            "args": list(self.args),
            "env": dict(self.env),
        }
        if self.health is not None:
            found["health"] = {
                "url": self.health.url,
                "expect_status": self.health.expect_status,
                "timeout_s": self.health.timeout_s,
                "interval_s": self.health.interval_s,
                "expect_model": self.health.expect_model,
            }
        return found

    def text(self) -> str:
        """The canonical text: sorted keys, one line, stable across Python versions."""
        return json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))

    def digest(self) -> str:
        return hashlib.sha256(self.text().encode()).hexdigest()


def make(service: str, environment: str, args: list[str] | tuple[str, ...],
         env: dict[str, str] | None = None,
         health: HealthCheck | None = None) -> ProcessSpec:  # fmt: skip
    """A checked spec: ProcessSpecError (one line) for what no agent could run."""
    if not service or not service.replace("-", "").replace("_", "").isalnum():
        raise ProcessSpecError(f"process service name {service[:64]!r} is invalid")
    if not ENVIRONMENT.match(environment):
        raise ProcessSpecError(
            f"process environment {environment[:32]!r} is not a backend ({', '.join(ENVIRONMENTS)})"
            " or an environment such as vulkan-0.3.36"
        )
    if tuple(args[:2]) != MODULE:
        raise ProcessSpecError(
            f"a host process runs {' '.join(MODULE)}, not {' '.join(args[:2])[:80]!r}"
        )
    for key, value in (env or {}).items():
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise ProcessSpecError(f"process environment variable {key[:64]!r} is invalid")
        if REFUSED_ENV.match(key):
            raise ProcessSpecError(
                f"environment variable {key[:64]} is refused for a model server (it could load "
                "code from a path): set it in the agent's own environment on hosts that need it"
            )
    if any("\0" in arg for arg in args):
        raise ProcessSpecError("a process argument holds a NUL byte")
    if health is not None:  # one form whoever built it (an int from YAML, a float from proto)
        health = HealthCheck(health.url, int(health.expect_status), float(health.timeout_s),
                             float(health.interval_s), health.expect_model)  # fmt: skip
    return ProcessSpec(
        service, environment, tuple(args), tuple(sorted((env or {}).items())), health
    )


def from_text(text: str) -> ProcessSpec:
    """The spec back from its canonical text (what the agent stores)."""
    try:
        data = json.loads(text)
        health = data.get("health")
        return make(
            str(data["service"]),
            str(data["environment"]),
            [str(arg) for arg in data["args"]],
            {str(k): str(v) for k, v in dict(data.get("env") or {}).items()},
            HealthCheck(
                str(health["url"]),
                int(health["expect_status"]),
                float(health["timeout_s"]),
                float(health["interval_s"]),
                str(health.get("expect_model", "")),
            )
            if health
            else None,
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ProcessSpecError(f"not a process spec: {exc}") from None
