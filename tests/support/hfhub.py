"""The stand-in Hugging Face Hub (tests/support/hfhub_server.py) as a process for tests: make
repositories in a directory, start it on a free port, point HF_ENDPOINT at `endpoint`, inject
faults (cut a download after N bytes, throttle), and count the body bytes it served."""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import TracebackType

from tests.support.procs import REPO

START_S = 15.0


class HfHub:
    def __init__(self, root: Path, lfs_threshold: int = 10 * 1024 * 1024) -> None:
        self.root = root
        self.lfs_threshold = lfs_threshold
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = root.parent / f"{root.name}.log"

    def repo(self, repo_id: str, files: dict[str, bytes]) -> None:
        """A repository ORG/NAME with these files, served at once (also once started)."""
        for path, data in files.items():
            target = self.root / repo_id / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        if self.process is not None and self.process.poll() is None:
            self._call("POST", "/_stub/rescan")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HfHub:
        self.root.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.support.hfhub_server", str(self.root),
                 "--port", "0", "--lfs-threshold", str(self.lfs_threshold)],
                stdout=subprocess.PIPE, stderr=log, cwd=REPO,
            )  # fmt: skip
        assert self.process.stdout is not None
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], 0.2)
            if ready:
                line = self.process.stdout.readline().decode()
                if line.startswith("PORT "):
                    self.port = int(line.split()[1])
                    return self
            if self.process.poll() is not None:
                break
        self.stop()
        raise AssertionError(f"the stand-in Hub did not start:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _call(self, method: str, path: str) -> bytes:
        request = urllib.request.Request(self.endpoint + path, method=method)
        with urllib.request.urlopen(request, timeout=10) as reply:
            body: bytes = reply.read()
            return body

    def commit(self, repo_id: str) -> str:
        """The commit `main` resolves to."""
        found: str = json.loads(self._call("GET", f"/api/models/{repo_id}/revision/main"))["sha"]
        return found

    def served(self, repo_id: str, path: str) -> int:
        """Body bytes of the file sent so far, all requests together."""
        counts: dict[str, int] = json.loads(self._call("GET", "/_stub/served"))
        return counts.get(f"{repo_id}/{path}", 0)

    def faults(self, abort_after: int = 0, aborts: int = 1, rate: float = 0.0,
               fail: int = 0) -> None:  # fmt: skip
        """Cut the next `aborts` bodies longer than `abort_after` after that many bytes;
        throttle bodies to `rate` bytes/s (0: none); answer the next `fail` file GETs 503.
        Every call sets them all (no arguments: no faults)."""
        query = f"abort_after={abort_after}&aborts={aborts}&rate={rate}&fail={fail}"
        self._call("POST", f"/_stub/faults?{query}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> HfHub:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:  # fmt: skip
        self.stop()
