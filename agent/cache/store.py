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

from agent.cache.index import FETCHING, PARTIAL, CachedEntry, Index
from agent.cache.layout import FILES, HF, TRASH, repo_folder
from agent.cache.layout import PARTIAL as PARTIAL_DIR
from agent.cache.sources import HttpSource, Source, Sources
from agent.cache.space import DEFAULT_RESERVE

log = logging.getLogger(__name__)

VARIABLE = "GPUFLEET_MODEL_CACHE"


def dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


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

    async def discard(self, record: CachedEntry, others: Iterable[CachedEntry]) -> None:
        """Remove an entry without holding up the event loop: its index goes first, its
        directories are renamed away at once, then deleted in a thread. An hf repository
        another entry still uses keeps its blobs and other snapshots."""
        place = record.place(self.root)
        self.index.remove(record.entry)
        doomed = [self.root / PARTIAL_DIR / record.entry]
        if record.layout == FILES:
            doomed.append(place.engine_path)
        elif any(o.layout == HF and o.repo == record.repo for o in others):
            doomed.append(place.snapshot)
        else:
            doomed.append(place.repo_dir)
        trashed = []
        for path in doomed:
            if path.exists() or path.is_symlink():
                trash = self.root / f"{TRASH}{record.entry}-{uuid.uuid4().hex[:12]}"
                path.rename(trash)
                trashed.append(trash)
        for trash in trashed:
            await asyncio.to_thread(shutil.rmtree, trash, True)
