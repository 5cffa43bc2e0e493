"""Real Podman for the tests: the repo's containers.conf and a busybox image built locally
(no registry is reachable) from Debian's busybox-static, by the demo image's builder."""

from __future__ import annotations

import os
import subprocess

from cli import demo_image
from tests.support.procs import REPO

IMAGE = "localhost/gpufleet-test:latest"
CONTAINERS_CONF = REPO / "tests" / "podman" / "containers.conf"
TEST_IMAGE = demo_image.ImageSpec(
    IMAGE,
    {"etc/passwd": (0o644, "root:x:0:0:root:/:/bin/sh\n"), "etc/group": (0o644, "root:x:0:\n")},
    "/bin/sh",
    "the test image",
)


class PodmanMissing(Exception):
    pass


def env() -> dict[str, str]:
    return {"CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env()}, check=check)  # fmt: skip


def build_image() -> str:
    """Import a busybox rootfs as IMAGE (about half a second) unless the one there is
    current (the builder's content hash label); return the image name."""
    try:
        demo_image.ensure_image(lambda argv: podman(*argv, check=False), lambda _: None,
                                TEST_IMAGE)  # fmt: skip
    except demo_image.DemoUnavailable as exc:
        raise PodmanMissing(str(exc)) from None
    return IMAGE


def containers(label_prefix: str) -> list[dict[str, str]]:
    """Containers whose compose project starts with `label_prefix` (id, project, service)."""
    import json

    done = podman("ps", "-a", "--format", "json")
    found = []
    for entry in json.loads(done.stdout or "[]"):
        labels = entry.get("Labels") or {}
        project = labels.get("io.podman.compose.project", "")
        if project.startswith(label_prefix):
            found.append({"id": entry["Id"], "project": project, "state": entry["State"],
                          "service": labels.get("com.docker.compose.service", "")})  # fmt: skip
    return sorted(found, key=lambda c: (c["project"], c["service"]))


def remove_projects(label_prefix: str) -> None:
    """Best-effort cleanup of what a test left running."""
    for container in containers(label_prefix):
        podman("rm", "-f", "-t", "0", container["id"], check=False)
    pods = podman("pod", "ps", "--format", "{{.Name}}", check=False).stdout.split()
    for pod in pods:
        if pod.startswith(f"pod_{label_prefix}"):
            podman("pod", "rm", "-f", pod, check=False)
    networks = podman("network", "ls", "--format", "{{.Name}}", check=False).stdout.split()
    for network in networks:
        if network.startswith(label_prefix):
            podman("network", "rm", "-f", network, check=False)
