"""The compose projects this agent runs, kept under STATE_DIR/projects/NAME/.

Only projects the hub sent are touched, by validated name, and nothing is written outside
the state dir. The compose file is adapted to the host's GPU runtime before it is written:
  cdi   NVIDIA devices stay as compose `deploy.resources.reservations.devices`
        (podman-compose turns them into --device nvidia.com/gpu=N)
  amd   /dev/kfd and /dev/dri are mapped; ROCR/HIP_VISIBLE_DEVICES name the GPUs
  none  no devices; only CUDA/NVIDIA_VISIBLE_DEVICES are set (CPU hosts, tests)
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import podman_compose  # type: ignore[import-untyped]
import yaml

from gpufleet.policy import Policy, refusals

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}")
RUNTIMES = ("cdi", "amd", "none")
COMPOSE_FILE = "compose.yaml"
OVERRIDE_FILE = "gpu-override.yaml"  # from agent/tasks/apply_assignment.py; owns the GPU devices
DIGEST_FILE = "digest"


class ProjectError(ValueError):
    pass


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise ProjectError(
            f"refused project name {name[:80]!r}: names are [a-z0-9_-], at most 63 characters"
        )
    return name


def expand(text: str, env: Mapping[str, str]) -> str:
    """Compose-style ${NAME} and ${NAME:-default}, as in the compose file itself."""

    def value(match: re.Match[str]) -> str:
        found = env.get(match.group("name"))
        return found if found else (match.group("default") or "")

    return VARIABLE.sub(value, text)


def escape(value: Any) -> Any:
    """Every `$` as `$$`, keys included: podman-compose expands the written file again and
    must find nothing left to expand."""
    if isinstance(value, dict):
        return {escape(k): escape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [escape(item) for item in value]
    return value.replace("$", "$$") if isinstance(value, str) else value


def _device_ids(devices: list[Any]) -> list[str] | None:
    """GPU ids a service reserves: explicit ids, the first `count`, or None for all."""
    ids: list[str] = []
    for device in devices:
        if not isinstance(device, dict):
            continue
        if device.get("device_ids"):
            ids += [str(i) for i in device["device_ids"]]
        elif isinstance(device.get("count"), int):
            ids += [str(i) for i in range(len(ids), len(ids) + device["count"])]
        else:
            return None
    return ids


def strip_gpu_devices(compose: dict[str, Any], services: set[str]) -> dict[str, Any]:
    """The document without the named services' device reservations (a new dict): a GPU
    override names their devices instead (compose would add both lists together)."""
    out: dict[str, Any] = {}
    for name, service in (compose.get("services") or {}).items():
        reservations = ((service.get("deploy") or {}).get("resources") or {}).get(
            "reservations"
        ) or {}
        if name in services and isinstance(reservations, dict) and "devices" in reservations:
            deploy = dict(service["deploy"])
            resources = dict(deploy["resources"])
            resources["reservations"] = {k: v for k, v in reservations.items() if k != "devices"}
            deploy["resources"] = resources
            service = {**service, "deploy": deploy}
        out[name] = service
    return {**compose, "services": out}


def adapt(compose: dict[str, Any], runtime: str) -> dict[str, Any]:
    """The compose document as this host's GPU runtime needs it (a new dict)."""
    if runtime not in RUNTIMES:
        raise ProjectError(f"unknown GPU runtime {runtime!r}: choose one of {RUNTIMES}")
    if runtime == "cdi":
        return compose
    services: dict[str, Any] = {}
    for name, service in (compose.get("services") or {}).items():
        service = dict(service)
        reservations = (service.get("deploy") or {}).get("resources", {}).get("reservations", {})
        devices = reservations.get("devices") if isinstance(reservations, dict) else None
        if devices:
            ids = _device_ids(devices)
            visible = ",".join(ids) if ids is not None else "all"
            deploy = dict(service["deploy"])
            resources = dict(deploy["resources"])
            resources["reservations"] = {k: v for k, v in reservations.items() if k != "devices"}
            deploy["resources"] = resources
            service["deploy"] = deploy
            environment = service.get("environment") or {}
            if isinstance(environment, list):
                environment = dict(item.split("=", 1) for item in environment if "=" in item)
            keys = ("ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES") if runtime == "amd" else (
                "NVIDIA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES")  # fmt: skip
            service["environment"] = {**environment, **dict.fromkeys(keys, visible)}
            if runtime == "amd":
                service["devices"] = [*service.get("devices", []), "/dev/kfd", "/dev/dri"]
                service["group_add"] = [*service.get("group_add", []), "video", "render"]
        services[name] = service
    return {**compose, "services": services}


@dataclass(frozen=True)
class Project:
    name: str
    directory: Path

    @property
    def compose_file(self) -> Path:
        return self.directory / COMPOSE_FILE

    def digest(self) -> str:
        try:
            return (self.directory / DIGEST_FILE).read_text().strip()
        except FileNotFoundError:
            return ""

    def record(self, digest: str) -> None:
        """The configuration with this digest runs: written only once compose up succeeded."""
        temporary = self.directory / (DIGEST_FILE + ".tmp")
        temporary.write_text(digest + "\n")
        os.replace(temporary, self.directory / DIGEST_FILE)


class ProjectStore:
    def __init__(
        self,
        state_dir: Path,
        runtime: str = "none",
        policy: Policy | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.root = (state_dir / "projects").resolve()
        self.runtime = runtime
        # What this host runs (gpufleet.policy), whatever the hub sends; variables expand
        # with what podman-compose expands the files with.
        self.policy = policy or Policy()
        self.env = dict(os.environ if env is None else env)

    def variables(self, name: str) -> dict[str, str]:
        """What podman-compose 1.6 expands a project's files with (_parse_compose_file): the
        process environment (with --env) and the COMPOSE_* variables it sets itself."""
        project = self.project(name)
        pathsep = self.env.get("COMPOSE_PATH_SEPARATOR", os.pathsep)
        files = [str(project.compose_file)]
        if (project.directory / OVERRIDE_FILE).is_file():
            files.append(str(project.directory / OVERRIDE_FILE))
        return {
            **self.env,
            "COMPOSE_PROJECT_DIR": str(project.directory),
            "COMPOSE_FILE": pathsep.join(files),
            "COMPOSE_PATH_SEPARATOR": pathsep,
        }

    def expanded(self, name: str, document: Any) -> Any:
        """The document as podman-compose sees it: its own substitution (rec_subs), keys and
        each mapping's `environment:` included."""
        try:
            return podman_compose.rec_subs(document, self.variables(name))
        except Exception as exc:  # ${X:?message} and malformed forms
            raise ProjectError(f"project {name}: cannot expand variables ({exc})") from None

    def load(self, name: str) -> Any:
        """The stored compose file of `name`, expanded as podman-compose will read it."""
        return self.expanded(name, yaml.safe_load(self.project(name).compose_file.read_text()))

    def refused(self, name: str, document: Any) -> str:
        """The policy's first refusal of a compose document (as the hub sent it, or as it is
        stored), checked after podman-compose's expansion; "" when allowed."""
        directory = self.project(name).directory
        try:
            final = self.expanded(name, document)
        except ProjectError as exc:
            return str(exc)
        found = refusals(final, self.policy, self.env, directory, expanded=True)
        if not found:
            return ""
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        return f"project {name}: {found[0].line(self.policy.config_file)}{more}"

    def refused_on_disk(self, name: str) -> str:
        """The policy's refusal of the compose file stored for `name` (before recreating)."""
        project = self.project(name)
        try:
            document = yaml.safe_load(project.compose_file.read_text())
        except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
            return f"project {name}: cannot read its compose file: {exc}"
        return self.refused(name, document)

    def project(self, name: str) -> Project:
        directory = (self.root / check_name(name)).resolve()
        if directory.parent != self.root:  # belt and braces: the regex already forbids it
            raise ProjectError(f"refused project name {name!r}: outside the state dir")
        return Project(name, directory)

    def write(self, name: str, text: str, digest: str) -> Project:
        """Check the file the hub sent, adapt it to this host, and write it. What runs is no
        longer known by digest until the caller's compose up succeeds (Project.record): a
        failed or cancelled up must not report the old containers under the new digest."""
        if hashlib.sha256(text.encode()).hexdigest() != digest:
            raise ProjectError(f"project {name}: the compose file does not match its digest")
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ProjectError(f"project {name}: invalid compose YAML ({exc})") from None
        if not isinstance(document, dict) or not isinstance(document.get("services"), dict):
            raise ProjectError(f"project {name}: a compose file needs a services mapping")
        refused = self.refused(name, document)
        if refused:  # before anything is written: nothing changes on this host
            raise ProjectError(refused)
        # What was checked is what runs: the expanded document, written with `$` escaped.
        document = self.expanded(name, document)
        if not isinstance(document.get("services"), dict):
            raise ProjectError(f"project {name}: a compose file needs a services mapping")
        project = self.project(name)
        project.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        adapted = adapt(document, self.runtime)
        if (project.directory / OVERRIDE_FILE).is_file():
            adapted = strip_gpu_devices(adapted, set(adapted.get("services") or {}))
        (project.directory / DIGEST_FILE).unlink(missing_ok=True)
        temporary = project.compose_file.with_suffix(".tmp")
        temporary.write_text(yaml.safe_dump(escape(adapted), sort_keys=False))
        os.replace(temporary, project.compose_file)
        return project

    def known(self) -> list[Project]:
        if not self.root.is_dir():
            return []
        return [
            Project(entry.name, entry)
            for entry in sorted(self.root.iterdir())
            if NAME.match(entry.name) and (entry / COMPOSE_FILE).is_file()
        ]
