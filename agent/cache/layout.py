"""Where the model cache keeps things (one root: STATE_DIR/models or --model-cache DIR).

  files/ENTRY/PATH                          the files layout (GGUF): plain files
  hf/models--ORG--NAME/blobs/SHA256         the Hugging Face cache layout (vLLM with
  hf/models--ORG--NAME/snapshots/REV/PATH     HF_HUB_OFFLINE=1): each snapshot file a relative
  hf/models--ORG--NAME/refs/main              symlink to its blob; refs/main the revision,
                                              without a newline
  .partial/ENTRY/REVISION/PATH              a file being fetched (resumed by the next fetch)
  entries/ENTRY.json                        the index (agent/cache/index.py)
  .removing-*                               an entry being deleted

Names come from the hub: each is checked here before it becomes a path.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

FILES, HF = "files", "hf"
LAYOUTS = (FILES, HF)
LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
REPO_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
PARTIAL = ".partial"
TRASH = ".removing-"


def check_entry(name: str) -> str:
    if not LABEL.match(name):
        raise ValueError(f"registry entry {name[:80]!r} is not a DNS label (a-z, 0-9, -)")
    return name


def check_revision(revision: str) -> str:
    if not REVISION.match(revision) or ".." in revision:
        raise ValueError(f"revision {revision[:80]!r}: expected a commit or digest")
    return revision


def check_repo(repo: str) -> str:
    parts = repo.split("/")
    if len(parts) != 2 or not all(REPO_PART.match(p) and ".." not in p for p in parts):
        raise ValueError(f"repository {repo[:80]!r}: expected ORG/NAME")
    return repo


def check_path(path: str) -> str:
    """A file's path inside its entry: relative, no `..`, no empty or hidden-dot parts."""
    parts = PurePosixPath(path).parts
    odd = path.startswith("/") or "\\" in path or "\0" in path
    if not parts or odd or any(p in (".", "..") for p in parts) or str(PurePosixPath(path)) != path:
        raise ValueError(f"file path {path[:120]!r} is not a relative path inside the entry")
    return path


def check_sha256(value: str, what: str) -> str:
    if not SHA256.match(value):
        raise ValueError(f"{what}: {value[:80]!r} is not a hex sha256")
    return value


def repo_folder(repo: str) -> str:
    """models--ORG--NAME, as huggingface_hub names a model repository's cache folder."""
    return "models--" + check_repo(repo).replace("/", "--")


@dataclass(frozen=True)
class Place:
    """Where one entry lives in a cache root."""

    root: Path
    entry: str
    revision: str
    layout: str
    repo: str = ""

    @property
    def engine_path(self) -> Path:
        """What CachedEntry.path names: the entry's directory (files), the HF cache (hf)."""
        return self.root / FILES / self.entry if self.layout == FILES else self.root / HF

    @property
    def repo_dir(self) -> Path:
        return self.root / HF / repo_folder(self.repo)

    @property
    def snapshot(self) -> Path:
        return self.repo_dir / "snapshots" / self.revision

    @property
    def partial_dir(self) -> Path:
        return self.root / PARTIAL / self.entry / self.revision

    def part(self, path: str) -> Path:
        return self.partial_dir / check_path(path)

    def final(self, path: str, sha256: str) -> Path:
        """Where the file's bytes end up: the plain file, or the hf blob."""
        if self.layout == FILES:
            return self.root / FILES / self.entry / check_path(path)
        return self.repo_dir / "blobs" / check_sha256(sha256, path)

    def visible(self, path: str) -> Path:
        """Where engines open it: the plain file, or the snapshot's symlink."""
        if self.layout == FILES:
            return self.root / FILES / self.entry / check_path(path)
        return self.snapshot / check_path(path)

    def has_bytes(self, path: str, size: int, sha256: str) -> bool:
        """The file's bytes are in place with its size (not yet hashed)."""
        try:
            return self.final(path, sha256).stat().st_size == size
        except OSError:
            return False

    def present(self, path: str, size: int, sha256: str) -> bool:
        """The file is in place with its size, where engines open it."""
        try:
            return self.has_bytes(path, size, sha256) and self.visible(path).stat().st_size == size
        except OSError:
            return False

    def place(self, part: Path, path: str, sha256: str) -> Path:
        """Move a checked part file into place (a rename: never half there) and, for the hf
        layout, point the snapshot's path at its blob."""
        final = self.final(path, sha256)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(part, final)
        sync_dir(final.parent)
        self.link(path, sha256)
        return final

    def link(self, path: str, sha256: str) -> None:
        """hf layout: the snapshot's path, a relative symlink to its blob (atomically)."""
        if self.layout != HF:
            return
        final = self.final(path, sha256)
        link = self.visible(path)
        link.parent.mkdir(parents=True, exist_ok=True)
        temporary = link.with_name(link.name + ".tmp-link")
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(os.path.relpath(final, link.parent))
        os.replace(temporary, link)

    def write_ref(self) -> None:
        """refs/main = the revision, no trailing newline (huggingface_hub reads it as is)."""
        if self.layout != HF:
            return
        refs = self.repo_dir / "refs"
        refs.mkdir(parents=True, exist_ok=True)
        temporary = refs / ".main.tmp"
        temporary.write_text(self.revision)
        os.replace(temporary, refs / "main")


def sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
