"""Build the RPMs once per session and install them into a scratch root.

`built_rpms` and `installed_root` keep their result in the session's config, so the bench
smoke test (tests/bench) and these tests share one build, whichever asks first."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import need
from tests.support.procs import REPO

PACKAGES = ("gpufleet-runtime", "gpufleet-agent", "gpufleet-hub", "gpufleet-gateway", "hubctl")


@dataclass(frozen=True)
class Built:
    rpms: dict[str, Path]  # package name -> its .rpm
    log: str


def rpm(*args: str | Path) -> str:
    result = subprocess.run(
        ["rpm", *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"rpm {' '.join(map(str, args))} failed:\n{result.stderr}")
    return result.stdout


_BUILT = pytest.StashKey[Built]()
_ROOT = pytest.StashKey[Path]()


@pytest.fixture(scope="session")
def built(request: pytest.FixtureRequest) -> Built:
    return built_rpms(request)


@pytest.fixture(scope="session")
def scratch_root(request: pytest.FixtureRequest) -> Path:
    return installed_root(request)


def built_rpms(request: pytest.FixtureRequest) -> Built:
    """The RPMs, built at the first call of the session."""
    if _BUILT not in request.config.stash:
        request.config.stash[_BUILT] = _build(request.getfixturevalue("tmp_path_factory"))
    return request.config.stash[_BUILT]


def installed_root(request: pytest.FixtureRequest) -> Path:
    """Every package installed into an empty root, at the first call of the session.
    Scriptlets are not run: the root has no shell, users or systemd; test_rpm checks them
    as text."""
    if _ROOT not in request.config.stash:
        factory: pytest.TempPathFactory = request.getfixturevalue("tmp_path_factory")
        root = factory.mktemp("root")
        rpm("--root", root, "--nodeps", "--noscripts", "-i", *built_rpms(request).rpms.values())
        request.config.stash[_ROOT] = root
    return request.config.stash[_ROOT]


def _build(tmp_path_factory: pytest.TempPathFactory) -> Built:
    if shutil.which("rpmbuild") is None:
        need("rpmbuild is missing: install Debian's package rpm")
    out = tmp_path_factory.mktemp("rpm")
    # A PYTHONPATH naming the source tree must not reach pip inside rpmbuild (it would leave
    # gpufleet out of the venv): build under one, whatever this session was started with.
    result = subprocess.run(
        [str(REPO / "scripts" / "build-rpm"), "--outdir", str(out)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(["proto", "."])},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"scripts/build-rpm failed:\n{log[-6000:]}"
    rpms = {}
    for path in (out / "RPMS").glob("*/*.rpm"):
        rpms[rpm("-qp", "--qf", "%{NAME}", path)] = path
    assert sorted(rpms) == sorted(PACKAGES), log[-3000:]
    return Built(rpms, log)


def in_root(root: Path, command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `command` (shell) where the scratch root's /opt and /usr/bin are the real ones:
    a private mount namespace with ROOT/opt bound on /opt and ROOT/usr/bin laid over
    /usr/bin, so installed launchers and units run as they would on a host."""
    if shutil.which("unshare") is None:
        need("unshare is missing: install Debian's package util-linux")
    setup = (
        f"mount -t overlay overlay -o lowerdir={root}/usr/bin:/usr/bin /usr/bin && "
        f"mount --bind {root}/opt /opt && "
    )
    return subprocess.run(
        ["unshare", "--mount", "sh", "-c", setup + command],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
