"""The Envs service's pure parts: its request checks (backend, version, GPU targets,
environment names, the agent's rules so that a bad request is refused before any node sees
it), which models run from which environment (`users`), what a removal takes on each node
and why it is refused, and the listings' messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from gpufleet import envnames
from gpufleet.envkey import version_order
from gpufleet.v1 import envs_pb2
from hub.configs import RESERVED_PREFIX
from hub.envs.view import BACKENDS, EnvView, NodeEnvs, env_to_proto
from hub.models.deploy import model_of

DEFAULT_VERSION = envnames.DEFAULT_VERSION  # the agents' when none is named (for examples)
MAX_TARGETS = 32
TARGET_CHARS = 16


class Refusal(ValueError):
    """A request the service refuses; one line naming the fix."""


def check_backend(backend: str) -> str:
    """The rules agents and hubctl follow too (gpufleet.envnames); Refusal for a bad one."""
    try:
        return envnames.check_backend(backend)
    except ValueError as exc:
        raise Refusal(str(exc)) from None


def check_version(version: str) -> str:
    try:
        return envnames.check_version(version)
    except ValueError as exc:
        raise Refusal(str(exc)) from None


def check_targets(targets: Sequence[str]) -> tuple[str, ...]:
    if len(targets) > MAX_TARGETS:
        raise Refusal(f"{len(targets)} extra GPU targets: at most {MAX_TARGETS}")
    for target in targets:
        plain = target.replace("-", "").replace(":", "")
        if not target or len(target) > TARGET_CHARS or not (plain.isascii() and plain.isalnum()):
            raise Refusal(f"GPU target {target[:24]!r} is not a CUDA architecture (86, 90a) or "
                          "gfx target (gfx1100)")  # fmt: skip
    return tuple(targets)


def check_name(name: str) -> str:
    """A backend ("vulkan") or an environment name ("vulkan-0.3.36")."""
    if not envnames.is_environment(name):
        raise Refusal(f"{name[:64]!r} is neither a backend ({', '.join(BACKENDS)}) nor an "
                      f"environment name such as vulkan-{DEFAULT_VERSION}")  # fmt: skip
    return name


def is_backend(name: str) -> bool:
    return name in BACKENDS


def users(envs: NodeEnvs) -> dict[tuple[str, str], list[str]]:
    """(node, environment name) -> the models running from it, by name: the host process
    projects (model-NAME) each agent reports running from each environment (it looks at the
    interpreter every server was started with, so a newer environment of the same backend, or
    one a process does not run from, is never taken for the one in use)."""
    found: dict[tuple[str, str], list[str]] = {}
    for node, reported in envs.items():
        for env in reported:
            models = sorted(model_of(p) for p in env.projects if p.startswith(RESERVED_PREFIX))
            if models:
                found[(node, env.name)] = models
    return found


def chosen(envs: Sequence[EnvView], name: str) -> list[str]:
    """The environments a removal of `name` takes on a node: every one of a backend (as the
    node reported them), or the one named (whether or not it was reported)."""
    if is_backend(name):
        return sorted((e.name for e in envs if e.backend == name), key=_order)
    return [name]


def _order(name: str) -> tuple[tuple[int, str], ...]:
    return version_order(name.partition("-")[2])


def in_use(plan: Mapping[str, Sequence[str]],
           used: Mapping[tuple[str, str], Sequence[str]]) -> list[str]:  # fmt: skip
    """One line per environment of `plan` (node -> names) that a model runs from."""
    lines = []
    for node, names in sorted(plan.items()):
        for name in names:
            models = used.get((node, name), ())
            if not models:
                continue
            which = f"model {models[0]}" if len(models) == 1 else f"models {', '.join(models)}"
            them = "it" if len(models) == 1 else "them"
            lines.append(f"{name} on {node} is in use by {which}: stop {them} first "
                         f"(hubctl models stop {models[0]} --node {node})")  # fmt: skip
    return lines


def log_env(envs: Sequence[EnvView], name: str) -> str | None:
    """The environment whose build log `name` asks for on a node: the one named (whatever its
    state: a failed build's log is the one needed), or a backend's newest ready one, else its
    newest of any state; None when the node reported none of the backend."""
    if not is_backend(name):
        return name
    mine = [e for e in envs if e.backend == name]
    ready = [e for e in mine if e.ready] or mine
    newest = max(ready, key=lambda e: version_order(e.version), default=None)
    return newest.name if newest is not None else None


def node_env(node: str, env: EnvView, models: Sequence[str], connected: bool) -> envs_pb2.NodeEnv:
    return envs_pb2.NodeEnv(node=node, env=env_to_proto(env), models=list(models),
                            connected=connected)  # fmt: skip


def listed(envs: Sequence[EnvView], backend: str) -> list[EnvView]:
    """A node's environments as listed: by backend, then version."""
    mine = [e for e in envs if not backend or e.backend == backend]
    return sorted(mine, key=lambda e: (BACKENDS.index(e.backend), version_order(e.version)))


def wheel_nodes(reported: Iterable[tuple[str, Sequence[EnvView]]],
                known: Iterable[str]) -> dict[str, list[str]]:  # fmt: skip
    """Wheel key -> the known nodes with an environment of that key, by name."""
    names = set(known)
    found: dict[str, set[str]] = {}
    for node, envs in reported:
        if node not in names:
            continue
        for env in envs:
            if env.key:
                found.setdefault(env.key, set()).add(node)
    return {key: sorted(nodes) for key, nodes in found.items()}
