"""Where the registry's bytes live: an object store keyed ENTRY/REVISION/PATH. The embedded one
is a directory in the hub's state dir (hub/registry/local.py); at scale any S3-compatible store
(hub/registry/s3.py, `--registry s3://BUCKET/PREFIX`). Both behave the same; only S3 presigns
URLs (nodes then fetch from the store directly, else through the hub's RegistryFetch.Download).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

# Bytes per piece a read yields (at most), and so per DownloadChunk: large pieces halve the
# hub's gRPC CPU per byte, and 3 MiB stays under the 4 MiB message limit of every client.
READ_PIECE = 3 * 1024 * 1024
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class StoreError(Exception):
    """The object store refused or failed; the message is one line saying what to do."""


class NotFound(StoreError):
    """No object under the key."""


class ObjectStore(Protocol):
    @property
    def kind(self) -> str:
        """local or s3."""
        ...

    async def prepare(self) -> None:
        """Ready for use (the directory made and swept of leftovers; the bucket reachable):
        StoreError, one line, when not."""
        ...

    async def put_file(self, key: str, path: Path) -> None:
        """The file's content under `key`, whole or not at all."""
        ...

    def read(self, key: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """The object's bytes from `offset`, `length` of them (None: to the end), in pieces of
        at most READ_PIECE. NotFound when there is no such object."""
        ...

    async def size(self, key: str) -> int | None:
        """The object's size; None when there is none."""
        ...

    async def delete_prefix(self, prefix: str) -> None:
        """Every object whose key starts with `prefix` (which ends with '/')."""
        ...

    def presign(self, key: str, expires_s: int) -> str | None:
        """A URL that GETs the object (with Range) for `expires_s` seconds; None on a store
        that has none (the local one)."""
        ...

    async def free_bytes(self) -> int | None:
        """Space left for new objects; None when the store does not say (S3)."""
        ...

    def describe(self) -> str:
        """Where it is, for logs and messages."""
        ...


def s3_location(spec: str) -> tuple[str, str]:
    """s3://BUCKET/PREFIX -> (BUCKET, "PREFIX/" or ""). StoreError for anything else."""
    bucket, _, prefix = spec.removeprefix("s3://").partition("/")
    prefix = prefix.strip("/")
    if not BUCKET.match(bucket) or any(p in ("", ".", "..") for p in prefix.split("/") if prefix):
        raise StoreError(f"--registry {spec[:120]}: expected s3://BUCKET/PREFIX with a bucket "
                         "name of 3 to 63 lowercase letters, digits, '.' or '-'")  # fmt: skip
    return bucket, f"{prefix}/" if prefix else ""


def check_spec(spec: str) -> str:
    """`--registry`'s value when it names a directory or a valid S3 location."""
    if spec.startswith("s3://"):
        s3_location(spec)
    elif "://" in spec:
        raise StoreError(f"--registry {spec[:120]}: not a directory or s3://BUCKET/PREFIX")
    return spec


def open_store(spec: str | None, state_dir: Path) -> ObjectStore:
    """The store `--registry` names: empty for STATE_DIR/registry, a directory, or
    s3://BUCKET/PREFIX. StoreError (one line) for a value that is neither."""
    from hub.registry.local import LocalStore  # here: it imports this module

    if not spec:
        return LocalStore(state_dir / "registry")
    if check_spec(spec).startswith("s3://"):
        from hub.registry.s3 import S3Store  # boto3 only when named

        return S3Store.from_spec(spec)
    return LocalStore(Path(spec).expanduser())
