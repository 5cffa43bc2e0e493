"""The registry in an S3-compatible object store (`--registry s3://BUCKET/PREFIX`), through
boto3 with the usual AWS settings: AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL for a store other
than AWS (MinIO, Ceph), AWS_DEFAULT_REGION, credentials from the environment, ~/.aws or an
instance role. Path-style addressing and SigV4 presigned URLs, which every S3-compatible server
takes. Large files go up in large multipart parts; an object appears whole or not at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
import botocore.exceptions
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from hub.registry.store import READ_PIECE, NotFound, StoreError, s3_location

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

T = TypeVar("T")
MiB = 1024 * 1024
# Parts of 64 MiB, 8 at once: a 60 GB model is ~900 parts (s3transfer grows parts past
# S3's 10,000-part limit for larger files).
TRANSFER = TransferConfig(multipart_threshold=64 * MiB, multipart_chunksize=64 * MiB,
                          max_concurrency=8, io_chunksize=MiB)  # fmt: skip
CLIENT = Config(
    signature_version="s3v4", s3={"addressing_style": "path"},
    connect_timeout=10, read_timeout=120, retries={"max_attempts": 5, "mode": "standard"},
)  # fmt: skip
SETTINGS = "check the bucket and the AWS settings (AWS_ENDPOINT_URL_S3, credentials, region)"


def _problem(exc: Exception) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', '?')}: {error.get('Message', '') or exc}".rstrip(": ")
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Store:
    kind = "s3"

    def __init__(self, bucket: str, prefix: str, client: S3Client) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.client = client

    @classmethod
    def from_spec(cls, spec: str) -> S3Store:
        bucket, prefix = s3_location(spec)
        try:
            client = boto3.client("s3", config=CLIENT)
        except botocore.exceptions.BotoCoreError as exc:
            raise StoreError(f"--registry {spec}: {_problem(exc)}: {SETTINGS}") from None
        return cls(bucket, prefix, client)

    def _key(self, key: str) -> str:
        return self.prefix + key

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise StoreError(f"{self.describe()}: {_problem(exc)}") from None

    async def prepare(self) -> None:
        try:
            await asyncio.to_thread(self.client.head_bucket, Bucket=self.bucket)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise StoreError(f"cannot use the registry {self.describe()}: {_problem(exc)}; "
                             f"{SETTINGS}") from None  # fmt: skip

    async def put_file(self, key: str, path: Path) -> None:
        await self._call(self.client.upload_file, str(path), self.bucket, self._key(key),
                         Config=TRANSFER)  # fmt: skip

    async def read(self, key: str, offset: int = 0,
                   length: int | None = None) -> AsyncIterator[bytes]:  # fmt: skip
        if length == 0:
            return
        last = "" if length is None else str(offset + length - 1)
        try:
            answer = await asyncio.to_thread(
                self.client.get_object, Bucket=self.bucket, Key=self._key(key),
                Range=f"bytes={offset}-{last}",
            )  # fmt: skip
        except botocore.exceptions.ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                raise NotFound(f"no object {key}") from None
            if _code(exc) == "InvalidRange":  # from the end of the object: nothing left
                return
            raise StoreError(f"{self.describe()}: {_problem(exc)}") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise StoreError(f"{self.describe()}: {_problem(exc)}") from None
        body = answer["Body"]
        try:
            while True:
                data = await self._call(body.read, READ_PIECE)
                if not data:
                    return
                yield data
        finally:
            body.close()

    async def size(self, key: str) -> int | None:
        try:
            found = await asyncio.to_thread(self.client.head_object, Bucket=self.bucket,
                                            Key=self._key(key))  # fmt: skip
        except botocore.exceptions.ClientError as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise StoreError(f"{self.describe()}: {_problem(exc)}") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise StoreError(f"{self.describe()}: {_problem(exc)}") from None
        return int(found["ContentLength"])

    async def delete_prefix(self, prefix: str) -> None:
        await self._call(self._delete, self._key(prefix))

    def _delete(self, prefix: str) -> None:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        for page in pages:
            keys: list[ObjectIdentifierTypeDef] = [
                {"Key": found["Key"]} for found in page.get("Contents", [])
            ]
            if not keys:
                continue
            # At most 1000 per page: what one delete_objects takes. Its refusals of single keys
            # are in the answer, not an exception.
            answer = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True}
            )
            errors = answer.get("Errors") or []
            if errors:
                first = errors[0]
                raise StoreError(
                    f"s3://{self.bucket}: {len(errors)} objects under {prefix} "
                    f"were not deleted ({first.get('Key', '?')}: "
                    f"{first.get('Code', '?')} {first.get('Message', '')})".rstrip()
                )

    def presign(self, key: str, expires_s: int) -> str | None:
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._key(key)},
            ExpiresIn=expires_s,
        )  # fmt: skip

    async def free_bytes(self) -> int | None:
        return None

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix} at {self.client.meta.endpoint_url}"
