"""Names of llama-cpp-python environments, one rule for the agent, the hub and hubctl: a
backend (cuda, vulkan, rocm, cpu), a llama-cpp-python version, and an environment BACKEND-VERSION
(e.g. vulkan-0.3.36: also its directory under the agent's STATE_DIR/envs, and what a host
process may name to run from exactly that one)."""

from __future__ import annotations

import re

BACKENDS = ("cuda", "vulkan", "rocm", "cpu")
# The llama-cpp-python version agents build when none is named.
DEFAULT_VERSION = "0.3.36"
# Digits first, then digits, letters, '.' and '+' (0.3.36, 0.3.36.post1, 0.3.36+cu124).
VERSION = re.compile(r"[0-9][0-9A-Za-z.+]{0,31}")


def check_backend(backend: str) -> str:
    """ValueError (one line) for what is not a backend."""
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend[:32]!r} is not one of {', '.join(BACKENDS)}")
    return backend


def check_version(version: str) -> str:
    if not VERSION.fullmatch(version):
        raise ValueError(f"llama-cpp-python version {version[:48]!r} is not a version, e.g. "
                         f"{DEFAULT_VERSION} (digits, letters, '.' and '+')")  # fmt: skip
    return version


def env_name(backend: str, version: str) -> str:
    return f"{backend}-{version}"


def split_name(name: str) -> tuple[str, str]:
    """ "vulkan-0.3.36" -> ("vulkan", "0.3.36"); ValueError for anything else."""
    backend, sep, version = name.partition("-")
    if not sep:
        raise ValueError(f"environment {name[:64]!r} is not BACKEND-VERSION, e.g. "
                         f"vulkan-{DEFAULT_VERSION}")  # fmt: skip
    return check_backend(backend), check_version(version)


def is_environment(name: str) -> bool:
    """A backend, or BACKEND-VERSION: what a host process may run from."""
    if name in BACKENDS:
        return True
    try:
        split_name(name)
    except ValueError:
        return False
    return True
