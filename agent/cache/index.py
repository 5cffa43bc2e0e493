"""The cache's index: one JSON file per entry (ROOT/entries/ENTRY.json, written atomically),
what the agent reports as CachedEntry and what a fetch or removal reads first."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from agent.cache.layout import FILES, LAYOUTS, Place, check_entry

log = logging.getLogger(__name__)

COMPLETE, PARTIAL, FETCHING = "complete", "partial", "fetching"
STATES = (COMPLETE, PARTIAL, FETCHING)
ENTRIES = "entries"


@dataclass(frozen=True)
class CachedFile:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class CachedEntry:
    entry: str
    revision: str
    layout: str = FILES
    repo: str = ""
    state: str = PARTIAL
    verified: bool = False
    size: int = 0  # bytes on disk, complete and partial files
    path: str = ""  # where engines read it (Place.engine_path)
    files: tuple[CachedFile, ...] = field(default_factory=tuple)

    def with_(self, **changes: Any) -> CachedEntry:
        return replace(self, **changes)

    def place(self, root: Path) -> Place:
        return Place(root, self.entry, self.revision, self.layout, self.repo)

    def to_json(self) -> str:
        found = asdict(self)
        found["files"] = [asdict(f) for f in self.files]
        return json.dumps(found, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> CachedEntry:
        """ValueError for what is not an index file this agent wrote."""
        try:
            data = dict(json.loads(text))
            known = {f.name for f in fields(cls)}
            found = {k: v for k, v in data.items() if k in known}
            found["files"] = tuple(CachedFile(str(f["path"]), int(f["size"]), str(f["sha256"]))
                                   for f in found.get("files", ()))  # fmt: skip
            record = cls(**found)
        except (TypeError, KeyError, AttributeError, ValueError) as exc:
            raise ValueError(f"not a cache index file: {exc}") from None
        if record.state not in STATES or record.layout not in LAYOUTS:
            raise ValueError(f"unknown cache state {record.state!r} or layout {record.layout!r}")
        return record


class Index:
    def __init__(self, root: Path) -> None:
        self.directory = root / ENTRIES

    def file(self, entry: str) -> Path:
        return self.directory / f"{check_entry(entry)}.json"

    def read(self, entry: str) -> CachedEntry | None:
        try:
            return CachedEntry.from_json(self.file(entry).read_text())
        except (OSError, ValueError) as exc:
            if not isinstance(exc, FileNotFoundError):
                log.warning("model cache entry %s: unreadable index: %s", entry, exc)
            return None

    def write(self, record: CachedEntry) -> CachedEntry:
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.file(record.entry)
        temporary = target.with_name(target.name + ".tmp")
        temporary.write_text(record.to_json())
        os.replace(temporary, target)
        return record

    def remove(self, entry: str) -> None:
        self.file(entry).unlink(missing_ok=True)

    def records(self) -> list[CachedEntry]:
        if not self.directory.is_dir():
            return []
        found = []
        for item in sorted(self.directory.glob("*.json")):
            try:
                check_entry(item.stem)
            except ValueError:
                continue
            record = self.read(item.stem)
            if record is not None:
                found.append(record)
        return found
