"""The node's model cache as a whole: its root, index, reserve and sources; what engines are
pointed at (GPUFLEET_MODEL_CACHE), what running projects use, recovery and removal."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

from agent.cache.index import COMPLETE, FETCHING, PARTIAL, CachedEntry, Index
from agent.cache.layout import FILES, HF, TRASH, Place, repo_folder
from agent.cache.layout import PARTIAL as PARTIAL_DIR
from agent.cache.sources import HttpSource, Source, Sources
from agent.cache.space import DEFAULT_RESERVE
from agent.envs.store import dir_size

log = logging.getLogger(__name__)

VARIABLE = "GPUFLEET_MODEL_CACHE"


class ModelCache:
    def __init__(self, root: Path, reserve: int = DEFAULT_RESERVE,
                 hub: Source | None = None, http: Source | None = None) -> None:  # fmt: skip
        self.root = root.absolute()
        self.reserve = reserve
        self.index = Index(self.root)
        self.sources = Sources(http or HttpSource(), hub)
        # Entries a fetch task of this agent works on now.
        self.active: set[str] = set()

    def variables(self) -> dict[str, str]:
        """What compose files and process specs may name: ${GPUFLEET_MODEL_CACHE}."""
        return {VARIABLE: str(self.root)}

    def entry_size(self, record: CachedEntry) -> int:
        place = record.place(self.root)
        total = dir_size(place.partial_dir)
        for item in record.files:
            try:
                total += place.final(item.path, item.sha256).stat().st_size
            except (OSError, ValueError):
                continue
        return total

    def recover(self) -> list[str]:
        """At start-up: a fetch an earlier agent left running has no fetcher any more: it is
        partial (the next fetch resumes it); removals it left half done finish."""
        for trash in self.root.glob(f"{TRASH}*") if self.root.is_dir() else ():
            shutil.rmtree(trash, ignore_errors=True)
        found = []
        for record in self.index.records():
            if record.state == FETCHING and record.entry not in self.active:
                self.index.write(record.with_(state=PARTIAL, size=self.entry_size(record)))
                found.append(record.entry)
        return found

    def uses(self, record: CachedEntry, texts: Iterable[str]) -> bool:
        """Whether a compose file or process spec (expanded) uses the entry: it names the
        whole cache root, the entry's directory (files), or the repository's folder or the HF
        cache together with the repository id (hf)."""
        root = str(self.root)
        end = r"(?![\w.-]|/)"
        patterns = [re.escape(root) + end]
        if record.layout == FILES:
            patterns.append(re.escape(f"{root}/{FILES}/{record.entry}") + r"(?![\w.-])")
        else:
            patterns.append(re.escape(f"{root}/{HF}/{repo_folder(record.repo)}") + r"(?![\w.-])")
        for text in texts:
            if any(re.search(p, text) for p in patterns):
                return True
            if (
                record.layout == HF
                and record.repo in text
                and re.search(re.escape(f"{root}/{HF}") + end, text)
            ):
                return True
        return False

    def holder(self, entry: str, layout: str, repo: str) -> CachedEntry | None:
        """Another entry of this cache whose hf layout holds repository `repo` (in any state):
        refs/main serves one revision per repository, so two entries cannot share one."""
        if layout != HF:
            return None
        for record in self.index.records():
            if record.entry != entry and record.layout == HF and record.repo == repo:
                return record
        return None

    def shared_repo(self, entry: str, layout: str, repo: str, node: str) -> str | None:
        """The one line refusing a fetch of `entry` when another entry holds its repository
        here (else an import and a pull of one repository would serve each other's weights:
        engines read refs/main); None when the fetch may go on. A new revision of the same
        entry replaces its snapshot and refs/main."""
        other = self.holder(entry, layout, repo)
        if other is None:
            return None
        return (f"{entry}: repository {repo} is cached on this node as {other.entry} (one "
                f"revision per repository): uncache {other.entry} first: hubctl models uncache "
                f"{other.entry} --node {node}")  # fmt: skip

    def _trash(self, path: Path, entry: str) -> Path:
        trash = self.root / f"{TRASH}{entry}-{uuid.uuid4().hex[:12]}"
        path.rename(trash)
        return trash

    def _unused_blobs(self, place: Place, entry: str, kept: list[CachedEntry]) -> list[Path]:
        """Move away the repository's blobs that no snapshot left and no kept record names."""
        blobs = place.repo_dir / "blobs"
        if not blobs.is_dir():
            return []
        used = {f.sha256 for record in kept for f in record.files}
        for root, _dirs, files in os.walk(place.repo_dir / "snapshots"):
            for name in files:
                link = os.path.join(root, name)
                if os.path.islink(link):
                    used.add(os.path.basename(os.readlink(link)))
        unused = [b for b in blobs.iterdir() if b.name not in used and not b.is_dir()]
        if not unused:
            return []
        trash = self.root / f"{TRASH}{entry}-{uuid.uuid4().hex[:12]}"
        trash.mkdir()
        for item in unused:
            item.rename(trash / item.name)
        return [trash]

    def _keep_ref(self, place: Place, kept: list[CachedEntry]) -> None:
        """refs/main named the removed revision: name a kept one (a complete one first)."""
        if any(r.revision == place.revision for r in kept):
            return
        try:
            if (place.repo_dir / "refs" / "main").read_text() != place.revision:
                return
        except OSError:
            return
        best = sorted(kept, key=lambda r: r.state != COMPLETE)[0]
        best.place(self.root).write_ref()

    def drop_replaced(self, known: CachedEntry, current: CachedEntry) -> None:
        """After a fetch of a new revision (or repository) of an hf entry: the old snapshot
        and the blobs only it used go, unless another record still uses them. Blocking: the
        fetch task runs it in a thread."""
        if known.layout != HF or current.layout != HF:
            return
        if (known.repo, known.revision) == (current.repo, current.revision):
            return
        place = known.place(self.root)
        kept = [r for r in self.index.records() if r.entry != current.entry
                and r.layout == HF and r.repo == known.repo]  # fmt: skip
        if current.repo == known.repo:
            kept.append(current)
        trashed = []
        if not kept:
            if place.repo_dir.exists():
                trashed.append(self._trash(place.repo_dir, known.entry))
        else:
            if place.snapshot.exists() and not any(r.revision == known.revision for r in kept):
                trashed.append(self._trash(place.snapshot, known.entry))
            trashed += self._unused_blobs(place, known.entry, kept)
        for trash in trashed:
            shutil.rmtree(trash, True)

    async def discard(self, record: CachedEntry, others: Iterable[CachedEntry]) -> None:
        """Remove an entry without holding up the event loop: its index goes first, its
        directories are renamed away at once, then deleted in a thread. In an hf repository
        other entries still hold, a snapshot (and its blobs) another record uses stays; the
        blobs no snapshot left uses go; refs/main names a revision that stays."""
        place = record.place(self.root)
        self.index.remove(record.entry)
        doomed = [self.root / PARTIAL_DIR / record.entry]
        kept = [o for o in others if record.layout == HF and o.layout == HF
                and o.repo == record.repo and o.entry != record.entry]  # fmt: skip
        if record.layout == FILES:
            doomed.append(place.engine_path)
        elif not kept:
            doomed.append(place.repo_dir)
        elif not any(o.revision == record.revision for o in kept):
            doomed.append(place.snapshot)
        trashed = [self._trash(p, record.entry) for p in doomed if p.exists() or p.is_symlink()]
        if kept:
            trashed += self._unused_blobs(place, record.entry, kept)
            self._keep_ref(place, kept)
        for trash in trashed:
            await asyncio.to_thread(shutil.rmtree, trash, True)
