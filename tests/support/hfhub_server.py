"""A stand-in Hugging Face Hub for tests (stdlib only): serves ROOT/ORG/NAME/... in the Hub's
URL layout, so huggingface_hub's own calls (HF_ENDPOINT=http://127.0.0.1:PORT) work offline.

    python -m tests.support.hfhub_server ROOT [--port 0] [--lfs-threshold BYTES]

prints `PORT n` when listening. Answered (what huggingface_hub 2.4 asks):
  GET  /api/models/ORG/NAME/revision/REV    {"id", "sha", "siblings": [{"rfilename"}...]}
  GET  /api/models/ORG/NAME/tree/REV[/DIR]?recursive=true
                                            [{"type": "file", "path", "size", "oid", "lfs"?}...]
  HEAD|GET /ORG/NAME/resolve/REV/PATH       X-Repo-Commit, ETag (X-Linked-Etag and X-Linked-Size
                                            for LFS files); Range answers 206 + Content-Range
REV is "main" or the commit; anything else is 404 with X-Error-Code RevisionNotFound.

For the tests themselves:
  GET  /_stub/served                        {"PATH": body bytes sent, ...} per ORG/NAME/PATH
  POST /_stub/rescan                        read the repositories and hash their files again
  POST /_stub/faults?abort_after=N&aborts=K&rate=R&fail=F
        cut the next K file bodies longer than N after N bytes; throttle bodies to R bytes/s;
        answer the next F file GETs 503.
The file list and hashes are read at start (and at a rescan); bytes are read at each GET, so a
file changed on disk afterwards is served with the old hashes (a Hub that lies about sha256).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

PIECE = 1 << 20
LFS_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt")


@dataclass(frozen=True)
class StubFile:
    size: int
    git_sha1: str
    sha256: str | None  # set for the files the Hub keeps in LFS


class Repo:
    def __init__(self, root: Path, repo_id: str, lfs_threshold: int) -> None:
        self.dir = root / repo_id
        self.id = repo_id
        self.files: dict[str, StubFile] = {}
        for path in sorted(p for p in self.dir.rglob("*") if p.is_file()):
            rel = path.relative_to(self.dir).as_posix()
            size = path.stat().st_size
            git = hashlib.sha1(b"blob %d\0" % size)
            whole = hashlib.sha256()
            with path.open("rb") as source:
                for piece in iter(lambda: source.read(PIECE), b""):
                    git.update(piece)
                    whole.update(piece)
            lfs = size >= lfs_threshold or rel.endswith(LFS_SUFFIXES)
            self.files[rel] = StubFile(size, git.hexdigest(), whole.hexdigest() if lfs else None)
        listing = json.dumps(sorted((k, v.git_sha1) for k, v in self.files.items()))
        self.sha = hashlib.sha1(listing.encode()).hexdigest()

    def etag(self, rel: str) -> str:
        found = self.files[rel]
        return found.sha256 or found.git_sha1

    def tree_entry(self, rel: str) -> dict[str, object]:
        found = self.files[rel]
        entry: dict[str, object] = {"type": "file", "path": rel, "size": found.size,
                                    "oid": found.git_sha1}  # fmt: skip
        if found.sha256:
            entry["lfs"] = {"oid": found.sha256, "size": found.size, "pointerSize": 134}
        return entry


@dataclass
class State:
    repos: dict[str, Repo] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    aborts_left: int = 0
    abort_after: int = 0
    rate: float = 0.0  # bytes per second of file bodies; 0: unlimited
    fails_left: int = 0  # file GETs still to answer 503
    served: dict[str, int] = field(default_factory=dict)
    root: Path = Path()
    lfs_threshold: int = 0

    def count(self, key: str, sent: int) -> None:
        with self.lock:
            self.served[key] = self.served.get(key, 0) + sent

    def fail(self) -> bool:
        with self.lock:
            if self.fails_left > 0:
                self.fails_left -= 1
                return True
        return False

    def cut_after(self, length: int) -> int | None:
        with self.lock:
            if self.abort_after and length > self.abort_after and self.aborts_left > 0:
                self.aborts_left -= 1
                return self.abort_after
        return None


STATE = State()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hfstub/1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None,
              head: bool = False, ctype: str = "application/json") -> None:  # fmt: skip
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _error(self, code: int, error_code: str, message: str, head: bool,
               extra: dict[str, str] | None = None) -> None:  # fmt: skip
        headers = {"X-Error-Code": error_code, "X-Error-Message": message, **(extra or {})}
        self._send(code, json.dumps({"error": message}).encode(), headers, head)

    def do_HEAD(self) -> None:
        self._handle(head=True)

    def do_GET(self) -> None:
        try:
            self._handle(head=False)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away mid-body

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/_stub/rescan":
            scan(STATE.root, STATE.lfs_threshold)
            self._send(200, b"{}")
            return
        if url.path != "/_stub/faults":
            self._error(404, "NotFound", "not found", head=False)
            return
        query = parse_qs(url.query)
        with STATE.lock:
            STATE.abort_after = int(query.get("abort_after", ["0"])[0])
            STATE.aborts_left = int(query.get("aborts", ["1"])[0])
            STATE.rate = float(query.get("rate", ["0"])[0])
            STATE.fails_left = int(query.get("fail", ["0"])[0])
        self._send(200, b"{}")

    def _handle(self, head: bool) -> None:
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/")[1:]]
        if url.path == "/_stub/served":
            with STATE.lock:
                body = json.dumps(STATE.served).encode()
            self._send(200, body, head=head)
        elif len(parts) >= 6 and parts[:2] == ["api", "models"]:
            self._api(parts, parse_qs(url.query), head)
        elif len(parts) >= 5 and parts[2] == "resolve":
            self._resolve(parts, head)
        else:
            self._error(404, "RepoNotFound", "not found", head)

    def _repo(self, repo_id: str, rev: str, head: bool) -> Repo | None:
        repo = STATE.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", "Repository not found", head)
            return None
        if rev not in ("main", repo.sha):
            self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}", head)
            return None
        return repo

    def _api(self, parts: list[str], query: dict[str, list[str]], head: bool) -> None:
        repo = self._repo(f"{parts[2]}/{parts[3]}", parts[5], head)
        if repo is None:
            return
        if parts[4] == "revision":
            siblings = [{"rfilename": rel} for rel in sorted(repo.files)]
            body = {"_id": repo.sha[:24], "id": repo.id, "modelId": repo.id, "sha": repo.sha,
                    "private": False, "gated": False, "disabled": False, "tags": [],
                    "lastModified": "2026-01-01T00:00:00.000Z", "siblings": siblings}  # fmt: skip
            self._send(200, json.dumps(body).encode(), head=head)
        elif parts[4] == "tree":
            prefix = "/".join(parts[6:]).strip("/")
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            self._send(200, json.dumps(tree(repo, prefix, recursive)).encode(), head=head)
        else:
            self._error(404, "EntryNotFound", "not found", head)

    def _resolve(self, parts: list[str], head: bool) -> None:
        repo = self._repo(f"{parts[0]}/{parts[1]}", parts[3], head)
        if repo is None:
            return
        rel = "/".join(parts[4:])
        if rel not in repo.files:
            self._error(404, "EntryNotFound", f"{rel} not found", head,
                        {"X-Repo-Commit": repo.sha})  # fmt: skip
            return
        self._file(repo, rel, head)

    def _file(self, repo: Repo, rel: str, head: bool) -> None:
        if not head and STATE.fail():
            self._error(503, "ServiceUnavailable", "try again later", head)
            return
        found = repo.files[rel]
        size, etag = found.size, repo.etag(rel)
        headers = {"X-Repo-Commit": repo.sha, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
        if found.sha256:  # the Hub redirects to its CDN with these; the stub serves the bytes
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(size)})
        start, end, code = 0, size - 1, 200
        wanted = self.headers.get("Range")
        if wanted and wanted.startswith("bytes="):
            first, _, last = wanted[6:].split(",")[0].partition("-")
            if first == "":
                start = max(size - int(last), 0)
            else:
                start, end = int(first), min(int(last), size - 1) if last else size - 1
            if start >= size:
                headers["Content-Range"] = f"bytes */{size}"
                self._send(416, b"", headers, head, "application/octet-stream")
                return
            code = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        length = end - start + 1
        self.send_response(code)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self._body(repo, rel, start, length)

    def _body(self, repo: Repo, rel: str, start: int, length: int) -> None:
        """The bytes, each piece counted once written (so `served` is current at any time)."""
        limit, sent, key = STATE.cut_after(length), 0, f"{repo.id}/{rel}"
        with (repo.dir / rel).open("rb") as source:
            source.seek(start)
            while sent < length:
                piece = source.read(min(PIECE, length - sent))
                if not piece:
                    return
                if limit is not None and sent + len(piece) > limit:
                    self.wfile.write(piece[: limit - sent])
                    self.wfile.flush()
                    STATE.count(key, limit - sent)
                    self._cut(rel)
                    return
                self.wfile.write(piece)
                sent += len(piece)
                STATE.count(key, len(piece))
                if STATE.rate:
                    time.sleep(len(piece) / STATE.rate)

    def _cut(self, rel: str) -> None:
        self.close_connection = True
        sys.stderr.write(f"ABORT {rel}\n")
        # The bytes sent arrive, then the end: what was counted is what the client got.
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_WR)


def tree(repo: Repo, prefix: str, recursive: bool) -> list[dict[str, object]]:
    """The tree API's answer: folders, and the files under `prefix` (all levels if recursive)."""
    found: list[dict[str, object]] = []
    folders: set[str] = set()
    for rel in sorted(repo.files):
        if prefix and not rel.startswith(prefix + "/"):
            continue
        rest = rel[len(prefix) + 1 :] if prefix else rel
        if "/" in rest:
            segments = rest.split("/")
            for i in range(1, len(segments) if recursive else 2):
                folder = "/".join(([prefix] if prefix else []) + segments[:i])
                if folder not in folders:
                    folders.add(folder)
                    oid = hashlib.sha1(folder.encode()).hexdigest()
                    found.append({"type": "directory", "path": folder, "oid": oid, "size": 0})
            if not recursive:
                continue
        found.append(repo.tree_entry(rel))
    return found


def scan(root: Path, lfs_threshold: int) -> None:
    """The repositories under ROOT/ORG/NAME, their files hashed now."""
    repos = {}
    for org in sorted(p for p in root.iterdir() if p.is_dir()):
        for name in sorted(p for p in org.iterdir() if p.is_dir()):
            repo = Repo(root, f"{org.name}/{name.name}", lfs_threshold)
            repos[repo.id] = repo
            sys.stderr.write(f"repo {repo.id} sha {repo.sha} files {len(repo.files)}\n")
    with STATE.lock:
        STATE.repos = repos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--lfs-threshold", type=int, default=10 * 1024 * 1024)
    args = parser.parse_args()
    STATE.root, STATE.lfs_threshold = args.root, args.lfs_threshold
    scan(args.root, args.lfs_threshold)
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
