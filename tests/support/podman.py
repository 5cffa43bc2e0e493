"""Real Podman for the tests: the repo's containers.conf and a busybox image built locally
(no registry is reachable) from Debian's busybox-static."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from tests.support.procs import REPO

IMAGE = "localhost/gpufleet-test:latest"
CONTAINERS_CONF = REPO / "tests" / "podman" / "containers.conf"
BUSYBOX = Path("/bin/busybox")


class PodmanMissing(Exception):
    pass


def env() -> dict[str, str]:
    return {"CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env()}, check=check)  # fmt: skip


def build_image() -> str:
    """Import a busybox rootfs as IMAGE (about half a second); return the image name."""
    if shutil.which("podman") is None:
        raise PodmanMissing("podman not found: install Debian's packages podman runc netavark")
    linked = subprocess.run(["ldd", str(BUSYBOX)], capture_output=True, text=True, check=False)
    if not BUSYBOX.is_file() or "not a dynamic executable" not in linked.stdout + linked.stderr:
        raise PodmanMissing("no static busybox: install Debian's package busybox-static")
    with tempfile.TemporaryDirectory() as work:
        root = Path(work) / "rootfs"
        for folder in ("bin", "etc", "tmp", "www", "proc", "sys", "dev"):
            (root / folder).mkdir(parents=True)
        shutil.copy2(BUSYBOX, root / "bin" / "busybox")
        applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True,
                                 check=True).stdout.split()  # fmt: skip
        for applet in applets:
            if applet != "busybox":
                (root / "bin" / applet).symlink_to("busybox")
        (root / "etc" / "passwd").write_text("root:x:0:0:root:/:/bin/sh\n")
        (root / "etc" / "group").write_text("root:x:0:\n")
        archive = Path(work) / "rootfs.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(root, arcname=".")
        done = podman("import", "--change", 'CMD ["/bin/sh"]', "--change", "ENV PATH=/bin",
                      str(archive), IMAGE, check=False)  # fmt: skip
    if done.returncode != 0:
        raise PodmanMissing(f"podman cannot import an image here: {done.stderr.strip()}")
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
