"""What compose content an agent runs: the host's policy, enforced by the agent before any
compose run whatever the hub sent, and used by the hub to warn at `configs validate`.

By default a compose file may not: run `privileged`; join the host's namespaces (`ipc`,
`pid`, `network_mode`, `userns_mode`, `uts`, `cgroup`: host) or another container's; bind
host paths (volumes, build contexts, env files, secrets, volume driver options) outside the
allowed roots; add capabilities; map devices other than GPUs (/dev/nvidia*, /dev/dri,
/dev/kfd, CDI nvidia.com/gpu=... and amd.com/gpu=...); weaken confinement with `security_opt`
(unconfined, label disable, unmask) or `device_cgroup_rules`; choose an OCI `runtime`; or
bring content the policy cannot see (`include`, `extends` from a file, `x-podman` options).
An operator widens it per host in the agent's config file (docs/architecture.md, "Threat
model"). The agent checks the document after expanding it exactly as podman-compose does
(keys included; agent/projects.py) and writes that expanded document with every `$` escaped,
so the file that runs is the file that was checked (`expanded=True`). Without it (the hub, and
direct callers) variables expand with this module's own ${NAME} rules, a form it cannot
expand is refused rather than guessed, and a variable in a key is refused.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BRACED = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}")
GPU_DEVICE = re.compile(r"^(/dev/nvidia[a-z0-9-]*(/.*)?|/dev/dri(/.*)?|/dev/kfd)$")
GPU_CDI = re.compile(r"^(nvidia\.com|amd\.com)/gpu=[A-Za-z0-9_.,:-]+$")
UNCONFINED = re.compile(r"unconfined|label[=:]disable|unmask|label[=:]type:spc_t", re.I)
NAMESPACES = {  # key -> the setting that allows `key: host`
    "ipc": "allow_ipc_host",
    "pid": "allow_pid_host",
    "network_mode": "allow_network_host",
    "net": "allow_network_host",
    "userns_mode": "allow_privileged",
    "uts": "allow_privileged",
    "cgroup": "allow_privileged",
}
PATHLIKE = ("/", ".", "~")
NO_HOST_PATH = ("volume", "tmpfs", "image")  # long-syntax volume types that bind no host path
DEVICE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,80}$")
CACHE_VARIABLE = "${GPUFLEET_MODEL_CACHE}"  # the agent's model cache root (issue 17)


@dataclass(frozen=True)
class Policy:
    allow_privileged: bool = False  # privileged, and with it every rule but bind roots
    allow_ipc_host: bool = False
    allow_pid_host: bool = False
    allow_network_host: bool = False
    allow_bind_roots: tuple[str, ...] = ()
    allow_capabilities: tuple[str, ...] = ()
    allow_devices: tuple[str, ...] = ()
    # The agent's own model cache root: bound read-only (`:ro`) without allow_bind_roots.
    model_cache: str = ""
    config_file: str = "/etc/gpufleet/agent.yaml"  # where the settings are changed


@dataclass(frozen=True)
class Refusal:
    service: str  # "" for a top-level key
    key: str
    what: str  # e.g. "ipc: host"
    setting: str  # e.g. "allow_ipc_host: true"; "" when no setting allows it
    fix: str = ""  # how to write it instead, when no setting allows it

    def line(self, config_file: str) -> str:
        where = f"service {self.service}: " if self.service else ""
        how = (f"set {self.setting} in {config_file}" if self.setting else self.fix) or "remove it"
        return f"{where}{self.what} is not allowed on this host: {how}"

    def warning(self) -> str:
        where = f"service {self.service}: " if self.service else ""
        how = (
            f"hosts that run it need {self.setting} in their agent config"
            if self.setting
            else self.fix
        )
        return f"{where}{self.what} would be refused by an agent's default policy: {how}"


def _cap(name: str) -> str:
    return name.upper().removeprefix("CAP_")


class _Check:
    def __init__(
        self, policy: Policy, env: Mapping[str, str] | None, base: Path | None, expanded: bool
    ) -> None:
        self.policy = policy
        self.expanded = expanded  # values are final: podman-compose expands nothing more
        self.env = env  # None: the hub, which does not know a host's variables
        self.base = base  # the project directory relative paths resolve from
        self.roots = [os.path.realpath(root) for root in policy.allow_bind_roots]
        self.cache = os.path.realpath(policy.model_cache) if policy.model_cache else ""

    def text(self, value: Any) -> str | None:
        """A string value with variables expanded; None when a form cannot be expanded."""
        raw = str(value)
        if self.expanded:
            return raw

        def sub(match: re.Match[str]) -> str:
            found = (self.env or {}).get(match.group("name"))
            if self.env is None and not match.group("default"):
                return "${" + match.group("name") + "}"  # unknown on the hub: kept visible
            return found if found else (match.group("default") or "")

        expanded = BRACED.sub(sub, raw.replace("$$", "\0"))
        if self.env is not None and "$" in expanded:
            return None
        return expanded.replace("\0", "$")

    def inside(self, path: str) -> bool:
        if self.env is None and "${" in path:
            return False  # a host path the hub cannot know: the host's roots decide
        home = (self.env or {}).get("HOME") or os.path.expanduser("~")
        if path == "~" or path.startswith("~/"):
            path = home + path[1:]
        elif path.startswith("~"):
            return False  # ~user: another user's home (podman-compose uses expanduser)
        full = os.path.realpath(Path(self.base or "/") / path)
        return any(full == root or full.startswith(root.rstrip("/") + "/") for root in self.roots)

    def in_cache(self, path: str) -> bool:
        """Under the agent's model cache root: ${GPUFLEET_MODEL_CACHE} on the hub, which does
        not know a host's paths; the real root on the agent."""
        if self.env is None:
            return path == CACHE_VARIABLE or path.startswith(CACHE_VARIABLE + "/")
        if not self.cache or not path.startswith("/"):
            return False
        full = os.path.realpath(path)
        return full == self.cache or full.startswith(self.cache.rstrip("/") + "/")


def _truthy(value: Any) -> bool:
    return value not in (None, False, "false", "False", "no", 0, "")


def _items(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return [f"{k}={v}" if v is not None else str(k) for k, v in value.items()]
    return [] if value is None else [value]


def _bind(c: _Check, service: str, key: str, source: Any, what: str,
          read_only: bool = False) -> Iterator[Refusal]:  # fmt: skip
    path = c.text(source)
    if path is None:
        yield Refusal(service, key, f"{key}: {source}", "", "write variables as ${NAME}")
    elif read_only and c.in_cache(path):
        return  # the agent's model cache, read-only
    elif not c.inside(path):
        if c.in_cache(path):
            yield Refusal(service, key, f"a writable bind mount of the model cache {source}",
                          "", "mount it read-only (:ro)")  # fmt: skip
            return
        shown = str(source)
        if c.env is not None and path != shown:
            shown += f" (here {path or 'empty'})"
        root = path if c.env is not None and path else "DIR"
        yield Refusal(service, key, f"{what} {shown}", f"allow_bind_roots: [{root}]")


def _volume_source(entry: Any) -> str | None:
    """The host path a service volume binds, or None for a named or anonymous volume."""
    if isinstance(entry, dict):
        if str(entry.get("type", "volume")) in NO_HOST_PATH:
            return None
        return str(entry.get("source", ""))  # bind, glob, or a type podman may add later
    text = str(entry)
    if ":" not in text:
        return None  # anonymous: a container path only
    source = text.split(":", 1)[0]
    return source if source.startswith(PATHLIKE) or "$" in source or not source else None


def _read_only(entry: Any) -> bool:
    """A service volume mounted read-only: `SRC:DST:ro` (with other options), or read_only."""
    if isinstance(entry, dict):
        return _truthy(entry.get("read_only"))
    parts = str(entry).split(":")
    return len(parts) >= 3 and "ro" in parts[-1].split(",")


def _gpu_reservations(name: str, spec: dict[str, Any]) -> Iterator[Refusal]:
    """GPU reservations become `--device nvidia.com/gpu=ID`: ids must be plain ids."""
    deploy = spec.get("deploy")
    resources = deploy.get("resources") if isinstance(deploy, dict) else None
    reserved = resources.get("reservations") if isinstance(resources, dict) else None
    devices = reserved.get("devices") if isinstance(reserved, dict) else None
    for device in devices if isinstance(devices, list) else []:
        ids = device.get("device_ids") if isinstance(device, dict) else None
        for gpu in ids if isinstance(ids, list) else []:
            if not DEVICE_ID.match(str(gpu)):
                yield Refusal(name, "deploy", f"GPU device id {str(gpu)[:40]!r}", "",
                              "use GPU indices or UUIDs")  # fmt: skip


def _service(c: _Check, name: str, spec: dict[str, Any]) -> Iterator[Refusal]:
    p = c.policy
    if _truthy(spec.get("privileged")) and not p.allow_privileged:
        yield Refusal(name, "privileged", "privileged: true", "allow_privileged: true")
    for key, setting in NAMESPACES.items():
        if key not in spec:
            continue
        value = c.text(spec[key])
        if value is None:
            yield Refusal(name, key, f"{key}: {spec[key]}", "", "write variables as ${NAME}")
        elif value == "host" and not getattr(p, setting):
            yield Refusal(name, key, f"{key}: host", f"{setting}: true")
        elif value.startswith("ns:"):  # any namespace by path, the host's too (/proc/1/ns/net)
            if not getattr(p, setting):
                yield Refusal(name, key, f"{key}: {value}", f"{setting}: true")
        elif value.startswith("container:") and not p.allow_privileged:
            yield Refusal(name, key, f"{key}: {value}", "allow_privileged: true")
    if "pod" in spec and not p.allow_privileged:  # overrides the pod podman-compose makes
        yield Refusal(name, "pod", f"pod: {spec['pod']}", "allow_privileged: true")
    allowed = {_cap(cap) for cap in p.allow_capabilities}
    for cap in _items(spec.get("cap_add")):
        if not p.allow_privileged and _cap(str(cap)) not in allowed:
            setting = f"allow_capabilities: [{_cap(str(cap))}]"
            yield Refusal(name, "cap_add", f"cap_add: {cap}", setting)
    yield from _gpu_reservations(name, spec)
    for device in _items(spec.get("devices")):
        raw = device.get("source", "") if isinstance(device, dict) else str(device)
        host = c.text(raw)
        host = host.split(":", 1)[0] if host is not None and not GPU_CDI.match(host) else host
        if host is not None and not GPU_CDI.match(host) and os.path.normpath(host) != host:
            host = None  # `..`, `//` or `.`: what it names is not what it says
        if host is None or not (GPU_CDI.match(host) or GPU_DEVICE.match(host)
                                or host in p.allow_devices or p.allow_privileged):  # fmt: skip
            yield Refusal(name, "devices", f"devices: {raw}", f"allow_devices: [{host or raw}]")
    if spec.get("device_cgroup_rules") and not p.allow_privileged:
        yield Refusal(name, "device_cgroup_rules", "device_cgroup_rules", "allow_privileged: true")
    for opt in _items(spec.get("security_opt")):
        if UNCONFINED.search(str(opt)) and not p.allow_privileged:
            yield Refusal(name, "security_opt", f"security_opt: {opt}", "allow_privileged: true")
    if spec.get("runtime") and not p.allow_privileged:
        yield Refusal(name, "runtime", f"runtime: {spec['runtime']}", "allow_privileged: true")
    for volume in _items(spec.get("volumes")):
        source = _volume_source(volume)
        if source is not None:
            yield from _bind(c, name, "volumes", source, "a bind mount of", _read_only(volume))
    for entry in _items(spec.get("volumes_from")):
        if str(entry).startswith("container:") and not p.allow_privileged:
            yield Refusal(name, "volumes_from", f"volumes_from: {entry}", "allow_privileged: true")
    build = spec.get("build")
    if build is not None:
        context = build.get("context", ".") if isinstance(build, dict) else build
        if not re.match(r"^[a-z]+://|^git@", str(context)):
            yield from _bind(c, name, "build", context, "a build context of")
    for env_file in _items(spec.get("env_file")):
        path = env_file.get("path", "") if isinstance(env_file, dict) else env_file
        yield from _bind(c, name, "env_file", path, "an env_file at")
    if isinstance(spec.get("extends"), dict) and "file" in spec["extends"]:
        yield Refusal(name, "extends", "extends from a file", "",
                      "write the service out in full in this file")  # fmt: skip
    for key in spec:
        if str(key).startswith("x-podman") and not p.allow_privileged:
            yield Refusal(name, str(key), f"{key}", "allow_privileged: true")


def _top(c: _Check, document: dict[str, Any]) -> Iterator[Refusal]:
    if "include" in document:
        yield Refusal("", "include", "include", "", "put every service in this one file")
    podman = document.get("x-podman")
    if isinstance(podman, dict) and set(podman) - {"in_pod"} and not c.policy.allow_privileged:
        what = "x-podman options other than in_pod"
        yield Refusal("", "x-podman", what, "allow_privileged: true")
    for section in ("services", "volumes", "secrets", "configs"):
        if document.get(section) is not None and not isinstance(document[section], dict):
            yield Refusal("", section, f"{section} as a {type(document[section]).__name__}", "",
                          f"write {section} as a mapping of names")  # fmt: skip
    for name, volume in _named(document, "volumes"):
        opts = volume.get("driver_opts") if isinstance(volume, dict) else None
        if isinstance(opts, dict) and "device" in opts:
            yield from _bind(c, "", "volumes", opts["device"], f"volume {name} binding")
    for section in ("secrets", "configs"):
        for name, item in _named(document, section):
            if isinstance(item, dict) and "file" in item:
                yield from _bind(c, "", section, item["file"], f"{section[:-1]} {name} from")


def _named(document: dict[str, Any], section: str) -> list[tuple[Any, Any]]:
    value = document.get(section)
    return list(value.items()) if isinstance(value, dict) else []


def _variable_keys(value: Any, where: str = "") -> Iterator[Refusal]:
    """Keys podman-compose would expand (`"${X:-privileged}": true`): never guessed."""
    if isinstance(value, dict):
        for key, item in value.items():
            if "$" in str(key):
                shown = f"{where}.{key}" if where else str(key)
                yield Refusal("", "key", f"a variable in the key {shown[:80]!r}", "",
                              "write keys without variables")  # fmt: skip
            yield from _variable_keys(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for item in value:
            yield from _variable_keys(item, where)


def refusals(
    document: Any,
    policy: Policy,
    env: Mapping[str, str] | None = None,
    base: Path | None = None,
    expanded: bool = False,
) -> list[Refusal]:
    """Everything in a compose document the policy refuses, in file order. `expanded`: the
    document is already expanded as podman-compose expands it (the agent) and is checked as
    it is. Otherwise `env` expands variables with this module's rules (None on the hub:
    unknown variables stay unknown). Relative paths resolve from `base`, the project
    directory; `~` with `env`'s HOME."""
    if not isinstance(document, dict):
        return []
    check = _Check(policy, env, base, expanded)
    found = [] if expanded else list(_variable_keys(document))
    found += _top(check, document)
    for name, spec in _named(document, "services"):
        if isinstance(spec, dict):
            found += _service(check, str(name), spec)
    return found


PACKAGED = {"allow_ipc_host: true"}  # what the packaged /etc/gpufleet/agent.yaml sets


def warnings(document: Any) -> list[str]:
    """What an agent with the built-in policy would refuse, one line each (for the hub)."""
    return [
        r.warning() + (" (the packaged agent.yaml sets it)" if r.setting in PACKAGED else "")
        for r in refusals(document, Policy())
    ]
