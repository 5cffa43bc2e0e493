"""A real S3 server process for the tests: moto's server (`pip install -e '.[dev]'` brings it;
MinIO is not packaged for Debian or PyPI), over HTTP on loopback, with a bucket made. boto3 finds
it through env(): AWS_ENDPOINT_URL_S3, test keys, region us-east-1.

    server = start_or_skip()        # skips (fails under CI=true) when moto is missing
    monkeypatch.setenv(...)         # or: for k, v in server.env().items()
    server.stop()
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from itertools import count
from typing import TYPE_CHECKING

import pytest

from tests.support.procs import free_port

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

INSTALL = "moto's S3 server is not installed: pip install -e '.[dev]'"
READY_S = 30.0
_buckets = count()


class S3Missing(Exception):
    pass


@dataclass
class S3Server:
    port: int
    process: subprocess.Popen[bytes]
    bucket: str = "gpufleet-test"
    _made: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, bucket: str = "gpufleet-test") -> S3Server:
        """S3Missing when moto (or its server's flask) is not installed."""
        for module in ("moto", "flask", "flask_cors"):
            if importlib.util.find_spec(module) is None:
                raise S3Missing(INSTALL)
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        server = cls(port, process, bucket)
        try:
            server._wait()
            server.make_bucket(bucket)
        except BaseException:
            server.stop()
            raise
        return server

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _wait(self) -> None:
        deadline = time.monotonic() + READY_S
        while True:
            if self.process.poll() is not None:
                error = (
                    self.process.stderr.read().decode(errors="replace")
                    if self.process.stderr
                    else ""
                )
                raise RuntimeError(f"moto's server exited ({self.process.returncode}): {error}")
            try:
                with urllib.request.urlopen(self.endpoint + "/", timeout=2):
                    return
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moto's server did not answer on {self.endpoint} "
                                       f"within {READY_S:g} s") from None  # fmt: skip
                time.sleep(0.05)

    def env(self) -> dict[str, str]:
        """What boto3 needs to reach it (and nothing of the caller's own AWS profile)."""
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }

    def apply(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Set env() in this process for one test."""
        for name, value in self.env().items():
            monkeypatch.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            monkeypatch.delenv(name, raising=False)

    def client(self) -> S3Client:
        import boto3
        from botocore.config import Config

        env = self.env()
        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=env["AWS_DEFAULT_REGION"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )  # fmt: skip

    def make_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        self._made.append(name)
        return name

    def fresh_bucket(self) -> str:
        """A new empty bucket (one per test keeps tests apart on one server)."""
        return self.make_bucket(f"gpufleet-test-{os.getpid()}-{next(_buckets)}")

    def spec(self, prefix: str = "registry", bucket: str | None = None) -> str:
        """The hub's --registry value for a bucket of this server."""
        return f"s3://{bucket or self.bucket}/{prefix}".rstrip("/")

    def keys(self, bucket: str | None = None) -> list[str]:
        """Every object key in the bucket."""
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket or self.bucket)
        )
        return sorted(found["Key"] for page in pages for found in page.get("Contents", []))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stderr is not None:
            with contextlib.suppress(OSError):
                self.process.stderr.close()


def start_or_skip(bucket: str = "gpufleet-test") -> S3Server:
    """A started server; without moto: a skip naming the install, a failure under CI=true."""
    try:
        return S3Server.start(bucket)
    except S3Missing as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true and {exc}", pytrace=False)
        pytest.skip(str(exc))
