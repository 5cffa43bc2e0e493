"""A throwaway PostgreSQL server from Debian's `postgresql` package, started by the tests."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.support.procs import free_port


class PostgresMissing(Exception):
    pass


def find_bin(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if found is None:
        raise PostgresMissing(f"{name} not found: install Debian's package postgresql")
    return found


@dataclass
class PostgresServer:
    root: Path
    port: int
    runas: list[str]

    @classmethod
    def start(cls) -> PostgresServer:
        initdb, pg_ctl = find_bin("initdb"), find_bin("pg_ctl")
        root = Path(tempfile.mkdtemp(prefix="gpufleet-pg-"))
        root.chmod(0o755)
        runas: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root: use the package's user
            shutil.chown(root, "postgres", "postgres")
            runas = ["runuser", "-u", "postgres", "--"]
        server = cls(root, free_port(), runas)
        data = root / "data"
        server._run(initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        server._run(
            pg_ctl,
            "-D",
            str(data),
            "-l",
            str(root / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
            "-o",
            f"-p {server.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off",
        )
        return server

    def _run(self, *argv: str) -> None:
        result = subprocess.run([*self.runas, *argv], capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed:\n{result.stdout}{result.stderr}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run(find_bin("pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
