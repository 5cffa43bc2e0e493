"""The demo image: tiny real HTTP servers standing in for model servers, built locally.

`localhost/gpufleet-demo:latest` is the host's static busybox (Debian's `busybox-static`) in
an otherwise empty root file system, imported with `podman import` (no registry, about 2.4
MB), plus CGI scripts for busybox httpd on port 8080:

    /cgi-bin/health        503 "loading" until $LOAD_DELAY seconds after start, then 200
                           "ready", with the CUDA_VISIBLE_DEVICES and VRAM_BUDGET_GB it got
    /cgi-bin/metrics       Prometheus text: demo_requests_running (requests in flight)
    /cgi-bin/work?seconds=N  "works" N seconds (default 5, at most 600), counted in flight

The image carries a label with the hash of everything it is built from, so a changed
builder (or busybox) rebuilds it and an unchanged one is never built twice.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

IMAGE = "localhost/gpufleet-demo:latest"
HASH_LABEL = "io.gpufleet.demo.hash"
BUSYBOX = Path("/bin/busybox")
BUILDER_VERSION = "1"

HTTP = "printf 'HTTP/1.1 %s\\r\\nContent-Type: %s\\r\\nCache-Control: no-store\\r\\n\\r\\n'"

# path in the image -> (mode, content)
FILES: dict[str, tuple[int, str]] = {
    "bin/demo-serve": (
        0o755,
        """#!/bin/sh
# A stand-in model server: busybox httpd on ${PORT:-8080}, healthy ${LOAD_DELAY:-2} s after
# start (a model loading); SIGTERM stops it at once.
mkdir -p /tmp/inflight
rm -f /tmp/ready
( sleep "${LOAD_DELAY:-2}" && touch /tmp/ready ) &
httpd -f -p "${PORT:-8080}" -h /www &
server=$!
trap 'kill $server 2>/dev/null; exit 0' TERM INT
echo "demo service ${SERVICE:-demo}: http on ${PORT:-8080}, ready in ${LOAD_DELAY:-2} s"
wait $server
""",
    ),
    "www/cgi-bin/health": (
        0o755,
        f"""#!/bin/sh
if [ -f /tmp/ready ]; then
  {HTTP} '200 OK' text/plain
  echo "ready ${{SERVICE:-demo}}: CUDA_VISIBLE_DEVICES=${{CUDA_VISIBLE_DEVICES:-}}" \
    "VRAM_BUDGET_GB=${{VRAM_BUDGET_GB:-}}"
else
  {HTTP} '503 Service Unavailable' text/plain
  echo "loading ${{SERVICE:-demo}}"
fi
""",
    ),
    "www/cgi-bin/metrics": (
        0o755,
        f"""#!/bin/sh
{HTTP} '200 OK' 'text/plain; version=0.0.4'
echo '# HELP demo_requests_running Requests in flight.'
echo '# TYPE demo_requests_running gauge'
echo "demo_requests_running $(ls /tmp/inflight | wc -l)"
""",
    ),
    "www/cgi-bin/work": (
        0o755,
        f"""#!/bin/sh
seconds=$(echo "$QUERY_STRING" | sed -n 's/.*seconds=\\([0-9]*\\).*/\\1/p')
seconds=${{seconds:-5}}
[ "$seconds" -le 600 ] || seconds=600
mark=/tmp/inflight/$$
trap 'rm -f $mark' EXIT
touch $mark
sleep "$seconds"
{HTTP} '200 OK' text/plain
echo "${{SERVICE:-demo}} worked $seconds s"
""",
    ),
    "www/index.html": (
        0o644,
        """<p>gpufleet demo service: <a href="/cgi-bin/health">health</a>,
<a href="/cgi-bin/metrics">metrics</a>, <a href="/cgi-bin/work?seconds=5">work 5 s</a>.</p>
""",
    ),
    "etc/passwd": (0o644, "root:x:0:0:root:/:/bin/sh\n"),
    "etc/group": (0o644, "root:x:0:\n"),
}
FOLDERS = ("bin", "etc", "tmp", "proc", "sys", "dev")

Run = Callable[[list[str]], subprocess.CompletedProcess[str]]


@dataclass(frozen=True)
class ImageSpec:
    """A busybox image: its name, files beside busybox and its applets, and its command (or,
    with `entrypoint`, its ENTRYPOINT: a compose `command:` then gives its arguments)."""

    name: str
    files: dict[str, tuple[int, str]]
    command: str
    what: str = "the demo image"
    entrypoint: bool = False


DEMO = ImageSpec(IMAGE, FILES, "/bin/demo-serve")


class DemoUnavailable(Exception):
    """A prerequisite is missing or podman cannot build: one line naming the fix."""


def run_podman(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *argv], capture_output=True, text=True, timeout=300,
                          check=False)  # fmt: skip


def content_hash(busybox: bytes, spec: ImageSpec = DEMO) -> str:
    """Everything the image is built from: busybox, files, command and builder version."""
    started = f"{'ENTRYPOINT' if spec.entrypoint else 'CMD'} {spec.command}"
    digest = hashlib.sha256(f"{BUILDER_VERSION}\0{started}\0".encode())
    digest.update(hashlib.sha256(busybox).digest())
    for path, (mode, content) in sorted(spec.files.items()):
        digest.update(f"{path}\0{mode:o}\0{content}\0".encode())
    return digest.hexdigest()[:16]


def check_prerequisites(
    which: Callable[[str], str | None] = shutil.which, busybox: Path = BUSYBOX
) -> None:
    """Podman, and a static busybox (the image has no libc to link a dynamic one against)."""
    if which("podman") is None:
        raise DemoUnavailable("podman not found: install Debian's packages podman runc netavark")
    static = False
    if busybox.is_file():
        linked = subprocess.run(["ldd", str(busybox)], capture_output=True, text=True, check=False)
        static = "not a dynamic executable" in linked.stdout + linked.stderr
    if not static:
        raise DemoUnavailable(
            f"no static busybox at {busybox}: install Debian's package busybox-static"
        )


def current_hash(run: Run, image: str = IMAGE) -> str | None:
    """The hash label of the image built before, None when there is none."""
    done = run(["image", "inspect", "--format", f'{{{{index .Labels "{HASH_LABEL}"}}}}', image])
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def rootfs_archive(work: Path, busybox: Path, files: dict[str, tuple[int, str]]) -> Path:
    """The image's root file system as a tar archive under `work`."""
    root = work / "rootfs"
    for folder in (*FOLDERS, *(str(Path(path).parent) for path in files)):
        (root / folder).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, root / "bin" / "busybox")
    applets = subprocess.run([str(busybox), "--list"], capture_output=True, text=True,
                             check=True).stdout.split()  # fmt: skip
    for applet in applets:
        if applet != "busybox":
            (root / "bin" / applet).symlink_to("busybox")
    for path, (mode, content) in files.items():
        (root / path).write_text(content)
        (root / path).chmod(mode)
    (root / "tmp").chmod(0o1777)
    archive = work / "rootfs.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(root, arcname=".")
    return archive


@dataclass(frozen=True)
class Built:
    image: str
    digest: str
    size_mb: float


def ensure_image(
    run: Run = run_podman, say: Callable[[str], None] = print, spec: ImageSpec = DEMO
) -> Built | None:
    """Build the image when it is missing or stale (saying what it builds); None when the
    one already there is current. Every failure is DemoUnavailable: one line, no traceback."""
    try:
        return _ensure(run, say, spec)
    except subprocess.TimeoutExpired as exc:
        raise DemoUnavailable(
            f"`{' '.join(map(str, exc.cmd))}` took more than {exc.timeout:g} s: is podman hung? "
            "(`podman info` should answer at once)"
        ) from None
    except (subprocess.SubprocessError, OSError) as exc:
        raise DemoUnavailable(f"cannot build {spec.what} {spec.name}: {exc}") from None


def _ensure(run: Run, say: Callable[[str], None], spec: ImageSpec) -> Built | None:
    check_prerequisites()
    image, digest = spec.name, content_hash(BUSYBOX.read_bytes(), spec)
    if current_hash(run, image) == digest:
        return None
    old = run(["image", "inspect", "--format", "{{.Id}}", image]).stdout.strip()
    with tempfile.TemporaryDirectory() as work:
        archive = rootfs_archive(Path(work), BUSYBOX, spec.files)
        size_mb = archive.stat().st_size / 1e6
        scripts = sum(1 for mode, _ in spec.files.values() if mode & 0o111)
        say(f"building {spec.what} {image} from {BUSYBOX} (busybox-static) and {scripts} "
            f"shell scripts, {size_mb:.1f} MB, with podman import (once; no registry)")  # fmt: skip
        start = f'{"ENTRYPOINT" if spec.entrypoint else "CMD"} ["{spec.command}"]'
        done = run(["import", "--change", start, "--change", "ENV PATH=/bin",
                    "--change", f"LABEL {HASH_LABEL}={digest}", "--change", "EXPOSE 8080",
                    str(archive), image])  # fmt: skip
    if done.returncode != 0:
        raise DemoUnavailable(f"podman cannot import {spec.what}: {done.stderr.strip()}")
    if old and not run(["image", "inspect", "--format", "{{.RepoTags}}", old]).stdout.strip("[]\n"):
        run(["rmi", old])  # the stale build, now untagged, unless a container still uses it
    return Built(image, digest, size_mb)
