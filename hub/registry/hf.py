"""Hugging Face through huggingface_hub's own API: a revision resolved to its commit, the
commit's files (size, LFS sha256, git blob id) filtered by allow patterns, and each file's
download URL and headers (HF_ENDPOINT and HF_TOKEN of the hub's environment). Every failure is
one line (HfError) that says what to check."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TypeVar

import gpufleet
from hub.registry.entries import EntryFile, Hasher

# httpx2 and huggingface_hub (about 1.3 MiB of the hub's memory with what they load) are
# imported by the first pull, not by the hub's start.
if TYPE_CHECKING:
    import httpx2 as httpx
    from huggingface_hub import HfApi

T = TypeVar("T")
COMMIT = re.compile(r"[0-9a-f]{40}")  # a commit as the Hub names it: used in paths and keys
PIECE = 1024 * 1024  # bytes per write into the part file
REHASH_PIECE = 8 * PIECE
RETRIES = 5  # ranged GETs in a row that bring no byte before a pull gives up on a file
RETRY_FIRST_S, RETRY_MAX_S = 0.2, 5.0  # waits between them: 0.4, 0.8, 1.6, 3.2 s
TIMEOUT_S, READ_TIMEOUT_S = 30.0, 60.0  # a ranged GET's connect and read timeouts


class HfError(Exception):
    """Hugging Face refused or could not be reached; one line."""


@dataclass(frozen=True)
class HfConfig:
    endpoint: str
    # None: huggingface_hub's own lookup (HF_TOKEN, then a stored `hf auth login`).
    token: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> HfConfig:
        from huggingface_hub import constants

        endpoint = (env.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")
        return cls(endpoint, env.get("HF_TOKEN") or None)


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    # LFS files: the sha256 the Hub records; the others: None (their git blob id checks them).
    sha256: str | None
    git_oid: str


def explain(exc: BaseException, repo: str, revision: str, endpoint: str) -> str:
    """One line for what huggingface_hub raised."""
    import httpx2 as httpx
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(exc, GatedRepoError):
        return (f"{repo} is gated on Hugging Face: accept its terms on the model's page and "
                "give the hub an HF_TOKEN of that account")  # fmt: skip
    if isinstance(exc, RepositoryNotFoundError):
        return (f"repository {repo} not found at {endpoint}: check the name; a private one "
                "needs the hub's HF_TOKEN")  # fmt: skip
    if isinstance(exc, RevisionNotFoundError):
        return f"{repo} has no revision {revision!r}: give a branch, tag or commit it has"
    if isinstance(exc, OfflineModeIsEnabled):
        return "the hub runs with HF_HUB_OFFLINE set: unset it to pull from Hugging Face"
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else "?"
        return f"Hugging Face answered {status} for {repo}: {first_line(exc)}"
    if isinstance(exc, httpx.HTTPError | OSError):
        return (f"cannot reach Hugging Face at {endpoint} ({first_line(exc)}): check the hub's "
                "network and HF_ENDPOINT")  # fmt: skip
    return f"Hugging Face: {first_line(exc)}"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


class HfRepo:
    """One repository on the Hub."""

    def __init__(self, config: HfConfig, repo: str) -> None:
        # huggingface_hub's API and download modules (about 10 MiB of the hub's memory) load
        # with the first pull, not with the hub.
        from huggingface_hub import HfApi

        self.config = config
        self.repo = repo
        self.api: HfApi = HfApi(endpoint=config.endpoint, token=config.token,
                         library_name="gpufleet", library_version=gpufleet.__version__)  # fmt: skip

    async def resolve(self, revision: str) -> str:
        """The commit (40 hex) a branch, tag or commit names."""

        def commit() -> str:
            found = self.api.model_info(self.repo, revision=revision)
            if not found.sha:
                raise HfError(f"Hugging Face did not say which commit {revision} of {self.repo} "
                              "is: give a commit with --revision")  # fmt: skip
            if not COMMIT.fullmatch(found.sha):
                raise HfError(f"Hugging Face named commit {found.sha[:80]!r} for {revision} of "
                              f"{self.repo}, not 40 hex digits: check the endpoint "
                              f"{self.config.endpoint or 'https://huggingface.co'}")  # fmt: skip
            return found.sha

        return await self._call(commit, revision)

    async def files(self, commit: str, include: Sequence[str]) -> list[RemoteFile]:
        """The commit's files matching `include` (all when empty), by path."""

        def listing() -> list[RemoteFile]:
            from huggingface_hub.hf_api import RepoFile

            # Where it is defined: huggingface_hub.utils re-exports it lazily, unseen by mypy.
            from huggingface_hub.utils._paths import filter_repo_objects

            tree = self.api.list_repo_tree(self.repo, revision=commit, recursive=True)
            found = [item for item in tree if isinstance(item, RepoFile)]
            chosen = filter_repo_objects(found, allow_patterns=list(include) or None,
                                         key=lambda item: item.path)  # fmt: skip
            return sorted(
                (RemoteFile(item.path, item.size, item.lfs.sha256 if item.lfs else None,
                            item.blob_id) for item in chosen),
                key=lambda item: item.path,
            )  # fmt: skip

        return await self._call(listing, commit)

    async def _call(self, fn: Callable[[], T], revision: str) -> T:
        try:
            return await asyncio.to_thread(fn)
        except HfError:
            raise
        except Exception as exc:
            raise HfError(explain(exc, self.repo, revision, self.config.endpoint)) from None

    def url(self, commit: str, path: str) -> str:
        from huggingface_hub import hf_hub_url

        return hf_hub_url(self.repo, path, revision=commit, endpoint=self.config.endpoint)

    def headers(self) -> dict[str, str]:
        # Where it is defined: huggingface_hub.utils re-exports it lazily, unseen by mypy.
        from huggingface_hub.utils._headers import build_hf_headers

        return build_hf_headers(token=self.config.token, library_name="gpufleet",
                                library_version=gpufleet.__version__)  # fmt: skip


class Damaged(HfError):
    """What was downloaded is not what the Hub lists (sha256, git blob id or size)."""


class _Transient(Exception):
    """A cut connection, a timeout, a 5xx or 429: worth another ranged GET."""


async def _whole(write: Awaitable[None]) -> None:
    """Await a write in a thread; a cancel lets it land first, so the file is closed after."""
    task = asyncio.ensure_future(write)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


@dataclass
class Receiving:
    """One file coming in: the part file, the hashes of every byte in it."""

    file: RemoteFile
    part: Path
    hasher: Hasher
    git: hashlib._Hash  # sha1 of the git blob ("blob SIZE\0" + content): files without LFS
    on_bytes: Callable[[int], None]

    @classmethod
    def resume(cls, file: RemoteFile, part: Path, on_bytes: Callable[[int], None]) -> Receiving:
        """What the part file holds, hashed again (read, not fetched): the resume's start."""
        found = cls(file, part, Hasher(), _git(file.size), on_bytes)
        part.parent.mkdir(parents=True, exist_ok=True)
        with part.open("ab") as out:
            if out.tell() > file.size:  # not this file's beginning: start again
                out.truncate(0)
        with part.open("rb") as held:
            for piece in iter(lambda: held.read(REHASH_PIECE), b""):
                found.absorb(piece)
        return found

    def absorb(self, data: bytes) -> None:
        self.hasher.update(data)
        if self.file.sha256 is None:
            self.git.update(data)

    def write(self, out: BinaryIO, data: bytes) -> None:
        out.write(data)
        self.absorb(data)

    def restart(self, out: BinaryIO) -> None:
        out.truncate(0)
        out.seek(0)
        self.hasher, self.git = Hasher(), _git(self.file.size)

    def check(self) -> None:
        file, got = self.file, self.hasher
        if got.size != file.size:
            raise Damaged(f"{file.path}: {got.size} bytes arrived, Hugging Face lists {file.size}")
        if file.sha256 is not None and got.sha256 != file.sha256:
            raise Damaged(f"{file.path}: sha256 {got.sha256[:16]}... is not the "
                          f"{file.sha256[:16]}... Hugging Face lists")  # fmt: skip
        if file.sha256 is None and self.git.hexdigest() != file.git_oid:
            raise Damaged(f"{file.path}: its git blob id {self.git.hexdigest()[:16]}... is not "
                          f"the {file.git_oid[:16]}... Hugging Face lists")  # fmt: skip


def _git(size: int) -> hashlib._Hash:
    return hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False)


async def download(repo: HfRepo, http: httpx.AsyncClient, commit: str, file: RemoteFile,
                   part: Path, on_bytes: Callable[[int], None]) -> EntryFile:  # fmt: skip
    """The file into `part` by ranged GETs of its Hub URL, from what `part` already holds;
    its sha256 and chunks, checked against what the Hub lists (Damaged when they differ).
    Cut connections are retried from the last byte written, RETRIES times without progress."""
    got = await asyncio.to_thread(Receiving.resume, file, part, on_bytes)
    failures = 0
    with part.open("ab") as out:
        while got.hasher.size < file.size:
            start = got.hasher.size
            try:
                await _fetch(repo, http, commit, got, out)
            except _Transient as exc:
                failures = 0 if got.hasher.size > start else failures + 1
                if failures >= RETRIES:
                    raise HfError(
                        f"{file.path}: {exc} ({RETRIES} tries); "
                        f"{got.hasher.size} bytes kept: pull again to resume"
                    ) from None
                await asyncio.sleep(min(RETRY_FIRST_S * 2**failures, RETRY_MAX_S))
    got.check()
    return got.hasher.file(file.path)


async def _fetch(repo: HfRepo, http: httpx.AsyncClient, commit: str, got: Receiving,
                 out: BinaryIO) -> None:  # fmt: skip
    """One ranged GET from the last byte written. What arrived before a cut is written too
    (pieces are gathered up to PIECE bytes per write)."""
    import httpx2 as httpx

    start, path = got.hasher.size, got.file.path
    headers = {**repo.headers(), "Range": f"bytes={start}-"}
    held = bytearray()

    async def flush() -> None:
        if held:
            data = bytes(held)
            held.clear()
            await _whole(asyncio.to_thread(got.write, out, data))
            got.on_bytes(len(data))

    timeout = httpx.Timeout(TIMEOUT_S, read=READ_TIMEOUT_S)
    try:
        async with http.stream("GET", repo.url(commit, path), headers=headers,
                               timeout=timeout) as response:  # fmt: skip
            await _answer(repo, commit, got, out, response)
            async for data in response.aiter_bytes():
                if got.hasher.size + len(held) + len(data) > got.file.size:
                    raise Damaged(f"{path}: more bytes than the {got.file.size} listed")
                held.extend(data)
                if len(held) >= PIECE:
                    await flush()
    except httpx.TransportError as exc:
        await flush()
        raise _Transient(first_line(exc)) from None
    await flush()
    if got.hasher.size < got.file.size:
        raise _Transient("the connection ended early")


async def _answer(repo: HfRepo, commit: str, got: Receiving, out: BinaryIO,
                  response: httpx.Response) -> None:  # fmt: skip
    """Whether the answer's body continues the part file (raised when not)."""
    status, start, path = response.status_code, got.hasher.size, got.file.path
    if status == 429 or status >= 500:
        raise _Transient(f"Hugging Face answered {status}")
    if status >= 400:
        from huggingface_hub import hf_raise_for_status
        from huggingface_hub.errors import HfHubHTTPError

        await response.aread()
        try:
            hf_raise_for_status(response)
        except HfHubHTTPError as exc:
            raise HfError(f"{path}: {explain(exc, repo.repo, commit, repo.config.endpoint)}"
                          ) from None  # fmt: skip
        raise HfError(f"{path}: Hugging Face answered {status}")
    if status == 200 and start:  # the Range was not honoured: the body is all of it
        await _whole(asyncio.to_thread(got.restart, out))
    elif status == 206 and not response.headers.get("Content-Range", "").startswith(
        f"bytes {start}-"
    ):
        raise HfError(f"{path}: Hugging Face answered another range than bytes {start}-")


def client() -> httpx.AsyncClient:
    """huggingface_hub's own async HTTP client (its hooks, redirects followed)."""
    from huggingface_hub import get_async_session

    return get_async_session()
