"""Registry to node cache throughput: the agent's fetch of a registry entry against a plain
copy of the same bytes with the same client library, on loopback, for both stores.

    python -m bench.registry                     # 512 MiB, 3 runs each
    python -m bench.registry --size-mb 16 --runs 1   # smallest, ~20 s

One file of random bytes is imported (`hubctl registry import`, a real CLI process) into a real
hub, then cached on a real agent (`Registry.CacheModel` on the entry, timed from the call to
the operation's end, freed again with UncacheModel between runs). The agent verifies every
16 MiB chunk by sha256 (the hub hashed the chunks and the file from the same bytes), fsyncs
and renames into place; each plain copy fsyncs too, so both are as durable.

- embedded store (the hub's state dir): the agent fetches through the hub's
  RegistryFetch.Download; the plain copy is a bare grpc.aio Download of the same file written
  to a file and fsynced.
- S3 (moto's server, tests/support/s3server.py; `--registry s3://BUCKET/PREFIX`): the agent
  fetches from the presigned URLs the hub sends; the plain copy is boto3's download_file of the
  same object (what `aws s3 cp` does) then fsynced, as one GET: moto reads the whole object for
  every ranged GET, so a multipart download would measure moto.

Prints the medians in MB/s side by side and their ratio (goal: at least 0.9), then the rate of
the node's task alone (its started to finished) and the seconds of the operation around it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from bench.common import hub_stub, ready_count, start_agent, start_hub, stop, wait
from gpufleet.v1 import hub_pb2, hub_pb2_grpc, registry_pb2, registry_pb2_grpc

NODE = "bench"
ENTRY = "bench-blob"
FILE = "blob.bin"
BUCKET = "gpufleet-bench"
PREFIX = "registry"
GOAL = 0.9
PIECE = 16 << 20

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from tests.support.s3server import S3Server


def write_blob(path: Path, size_mb: int) -> Path:
    with path.open("wb") as out:
        left = size_mb << 20
        while left:
            out.write(os.urandom(min(PIECE, left)))
            left -= min(PIECE, left)
    return path


def imported(address: str, blob: Path) -> dict[str, object]:
    """The blob imported through hubctl (a real CLI process); the entry as --json prints it."""
    done = subprocess.run(
        [sys.executable, "-m", "cli", "--hub", address, "--insecure", "registry", "import",
         ENTRY, str(blob), "--json"], capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"hubctl registry import failed: {done.stderr.strip()}")
    found: dict[str, object] = json.loads(done.stdout)
    return found


def finish(hub: hub_pb2_grpc.HubStub, reply: hub_pb2.OperationRef, what: str) -> hub_pb2.Operation:
    """The operation as it ended; SystemExit when it did not succeed."""
    for event in hub.WatchOperation(hub_pb2.WatchOperationRequest(id=reply.id)):
        if event.HasField("operation"):
            if event.operation.status != "succeeded":
                raise SystemExit(f"{what} failed: {event.operation}")
            ended: hub_pb2.Operation = event.operation
            return ended
    raise SystemExit(f"{what}: the watch ended without the operation's end")


def task_seconds(operation: hub_pb2.Operation) -> float:
    """How long the node's task ran (its started to finished), without the operation around it."""
    [node] = operation.nodes
    return (node.finished.ToDatetime() - node.started.ToDatetime()).total_seconds()


class Fleet:
    """A hub (with the registry store its options name) and one agent, real processes."""

    def __init__(self, work: Path, *hub_options: str) -> None:
        self.hub_process, self.address = start_hub(work / "hub", *hub_options)
        self.agent = None
        try:
            self.agent = start_agent(self.address, NODE, work / "agent", "--gpu-probe", "none",
                                     "--gpu-runtime", "none")  # fmt: skip
            self.hub = hub_stub(self.address)
            channel = grpc.insecure_channel(self.address)
            self.registry = registry_pb2_grpc.RegistryStub(channel)
            wait(lambda: ready_count(self.hub) == 1, 30, self.agent, self.hub_process)
        except BaseException:
            self.close()
            raise

    def cache(self) -> tuple[float, float]:
        """Seconds from CacheModel to the operation's end, and of the node's task alone; the
        node's copy then freed."""
        targets = hub_pb2.Targets(nodes=[NODE])
        started = time.perf_counter()
        reply = self.registry.CacheModel(
            registry_pb2.CacheModelRequest(name=ENTRY, targets=targets), timeout=30
        )
        done = finish(self.hub, reply, f"cache {ENTRY}")
        took = time.perf_counter() - started
        reply = self.registry.UncacheModel(
            registry_pb2.UncacheModelRequest(name=ENTRY, targets=targets), timeout=30
        )
        finish(self.hub, reply, f"uncache {ENTRY}")
        return took, task_seconds(done)

    def close(self) -> None:
        stop(self.agent, self.hub_process)


async def _download(address: str, revision: str, out: Path) -> int:
    """The plain copy over gRPC: RegistryFetch.Download of the whole file into `out`."""
    got = 0
    async with grpc.aio.insecure_channel(address) as channel:
        stub = registry_pb2_grpc.RegistryFetchStub(channel)
        request = registry_pb2.DownloadRequest(entry=ENTRY, revision=revision, path=FILE)
        with out.open("wb") as file:
            async for piece in stub.Download(request):
                file.write(piece.data)
                got += len(piece.data)
            file.flush()
            os.fsync(file.fileno())
    return got


def timed(copy: Callable[[], int], out: Path, size: int, what: str) -> float:
    """Seconds `copy` takes to put the file at `out` (removed again), checked whole."""
    started = time.perf_counter()
    got = copy()
    took = time.perf_counter() - started
    out.unlink()
    if got != size:
        raise SystemExit(f"{what}: {got} bytes of {size}")
    return took


def s3_copy(client: S3Client, key: str, out: Path, size: int) -> int:
    """boto3's download_file as one GET (moto reads the whole object for every ranged GET, so
    the default multipart download would measure moto, not the client)."""
    from boto3.s3.transfer import TransferConfig

    client.download_file(BUCKET, key, str(out), Config=TransferConfig(multipart_threshold=size + 1))
    with out.open("rb+") as file:  # as durable as the node's cache
        os.fsync(file.fileno())
    return out.stat().st_size


def object_key(client: S3Client, revision: str) -> str:
    """The blob's key in the bucket: the store keeps ENTRY/REVISION/PATH under its prefix."""
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX)
    wanted = f"{ENTRY}/{revision}/{FILE}"
    keys = [item["Key"] for item in listed.get("Contents", []) if item["Key"].endswith(wanted)]
    if not keys:
        raise SystemExit(f"no object ending {wanted} under s3://{BUCKET}/{PREFIX}")
    return str(keys[0])


@contextmanager
def s3_server() -> Iterator[S3Server | None]:
    """moto's S3 server with the bucket made; the AWS settings the hub's boto3 reads are set
    here, for the hub this process starts."""
    from tests.support.s3server import S3Missing, S3Server

    try:
        server = S3Server.start(BUCKET)
    except S3Missing as exc:
        raise SystemExit(str(exc)) from None
    try:
        os.environ.update(server.env())
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            os.environ.pop(name, None)
        yield server
    finally:
        server.stop()


def measure(
    work: Path, blob: Path, runs: int, store: str
) -> tuple[list[tuple[float, float]], list[float]]:
    """Seconds per fetch by the agent (whole, and its task alone), then per plain copy, `runs`
    each, for one store."""
    size = blob.stat().st_size
    with s3_server() if store == "s3" else _nothing() as server:
        options = ["--registry", server.spec(PREFIX)] if server is not None else []
        fleet = Fleet(work / store, *options)
        try:
            revision = str(imported(fleet.address, blob)["revision"])
            fetches = [fleet.cache() for _ in range(runs)]
            out = work / "copy.bin"
            if server is not None:
                client = server.client()
                key = object_key(client, revision)
                copies = [timed(lambda: s3_copy(client, key, out, size), out, size, "boto3 "
                                "download_file") for _ in range(runs)]  # fmt: skip
            else:
                copies = [timed(lambda: asyncio.run(_download(fleet.address, revision, out)),
                                out, size, "bare Download") for _ in range(runs)]  # fmt: skip
        finally:
            fleet.close()
    return fetches, copies


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


ROWS = {"embedded": ("agent fetch", "bare gRPC Download"),
        "s3": ("agent fetch", "boto3 download_file")}  # fmt: skip


def rows(store: str, size: int, fetches: list[tuple[float, float]], copies: list[float]) -> str:
    """The store's figures side by side, then how much of the fetch was the node's task."""
    whole = statistics.median(took for took, _ in fetches)
    task = statistics.median(alone for _, alone in fetches)
    agent = size / whole / 1e6
    plain = size / statistics.median(copies) / 1e6
    ratio = agent / plain
    verdict = "met" if ratio >= GOAL else "missed"
    ours, theirs = ROWS[store]
    return (f"{store:<9} {ours} {agent:7.1f} MB/s   {theirs} {plain:7.1f} MB/s   "
            f"ratio {ratio:.2f} (goal >= {GOAL}: {verdict})\n"
            f"{store:<9} the agent's task alone {size / max(task, 1e-6) / 1e6:7.1f} MB/s "
            f"(the operation around it: {whole - task:.2f} s)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=512, help="The file's size (MiB).")
    parser.add_argument("--runs", type=int, default=3, help="Fetches and copies per store.")
    parser.add_argument("--store", choices=("embedded", "s3", "both"), default="both")
    args = parser.parse_args()
    if args.size_mb < 1 or args.runs < 1:
        raise SystemExit("--size-mb and --runs must be at least 1")
    stores = ("embedded", "s3") if args.store == "both" else (args.store,)
    lines = []
    with tempfile.TemporaryDirectory(prefix="gpufleet-bench-registry-") as tmp:
        work = Path(tmp)
        blob = write_blob(work / FILE, args.size_mb)
        for store in stores:
            fetches, copies = measure(work, blob, args.runs, store)
            lines.append(rows(store, blob.stat().st_size, fetches, copies))
    print(f"size      {args.size_mb} MiB, {args.runs} runs each, loopback, median MB/s "
          "(agent: verified per 16 MiB chunk, fsynced; copies fsynced)")  # fmt: skip
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
