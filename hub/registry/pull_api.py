"""The Registry service's Pull RPC (`hubctl registry pull`), a mixin of RegistryService.

The service sets what it declares below: db, entries (RegistryStore), objects (ObjectStore),
state_dir, clock, _importing (the entries an import receives now) and manager (the hub's
OperationManager); `hf` is optional (None: HF_ENDPOINT and HF_TOKEN of the hub's environment
when each pull starts). A pull is an operation of kind registry-pull on the hub itself
(hub/registry/pull.py) holding the entry's name: a second pull of the entry from the same
repository joins it (PullResponse.joined); from another, or of an entry that holds another
source, is refused with ALREADY_EXISTS. At the hub's start, `interrupted_pulls()` fails the
entries a stop left pulling.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc

from gpufleet.v1 import registry_pb2 as pb
from hub.models.fields import REVISION
from hub.ops.kind import Request
from hub.ops.manager import OperationError, OperationManager
from hub.ops.submit import ERROR_CODES
from hub.registry.entries import FAILED, PULLING, Invalid, check_name, check_repo
from hub.registry.hf import HfConfig
from hub.registry.pull import STOPPED, PullKind, PullSpec, Registry, reservation
from hub.registry.store import ObjectStore
from hub.store.db import Database
from hub.store.registry import RegistryStore

Context = grpc.aio.ServicerContext[Any, Any]
MAX_PATTERNS = 64
MAX_PATTERN = 200  # characters of one include pattern


def pull_spec(request: pb.PullRequest) -> PullSpec:
    """The request checked; Invalid (one line) for what it may not be."""
    name = check_name(request.name)
    repo = check_repo(request.hf_repo)
    revision = request.revision
    if revision and (not REVISION.match(revision) or ".." in revision):
        raise Invalid(f"invalid revision {revision[:80]!r}: a branch, tag or commit "
                      "(letters, digits, '.', '_', '-', '/'; e.g. main or v1.0)")  # fmt: skip
    if len(request.include) > MAX_PATTERNS:
        raise Invalid(f"{len(request.include)} include patterns: at most {MAX_PATTERNS}")
    for pattern in request.include:
        if not pattern or len(pattern) > MAX_PATTERN or not pattern.isprintable():
            raise Invalid(f"invalid include pattern {pattern[:80]!r}: a glob of 1 to "
                          f"{MAX_PATTERN} printable characters, e.g. '*.gguf'")  # fmt: skip
    return PullSpec(name, repo, revision, tuple(dict.fromkeys(request.include)))


class PullApi:
    db: Database
    entries: RegistryStore
    objects: ObjectStore
    state_dir: Path
    clock: Callable[[], datetime]
    manager: OperationManager
    _importing: set[str]
    _removing: set[str]
    hf: HfConfig | None = None

    async def Pull(self, request: pb.PullRequest, context: Context) -> pb.PullResponse:
        try:
            spec = pull_spec(request)
        except Invalid as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise
        name = spec.name
        await self._not_busy(name, context)
        joined = await self._join(spec, context)
        if joined is not None:
            return joined
        existing = await self.db.call(self.entries.get, name)
        if existing is not None and existing.ready and existing.source != spec.source:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS,
                                f"entry {name} holds {existing.source}, not {spec.source}: pull "
                                f"into another name, or remove it first (hubctl registry rm "
                                f"{name})")  # fmt: skip
        # No await from these checks to the submit's reservation: a second Pull, an import
        # or a removal sees this one.
        joined = await self._join(spec, context)
        if joined is not None:
            return joined
        await self._not_busy(name, context)
        registry = Registry(self.db, self.entries, self.objects, self.state_dir, self.clock,
                            self.hf)  # fmt: skip
        try:
            operation_id = await self.manager.submit(Request(PullKind(spec, registry), []), [])
        except OperationError as exc:
            await context.abort(ERROR_CODES[exc.kind], str(exc))
            raise
        return pb.PullResponse(operation_id=operation_id)

    async def _not_busy(self, name: str, context: Context) -> None:
        """Refused while an import or a removal of the entry runs; awaits only to refuse."""
        if name in self._importing:
            doing = "is being imported: wait for the import to end, or pull into another name"
        elif name in self._removing:
            doing = "is being removed: pull it once the removal ended"
        else:
            return
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"entry {name} {doing}")
        raise AssertionError("abort raises")

    async def interrupted_pulls(self) -> list[str]:
        """At the hub's start: entries a stop left pulling are failed (a pull of the name
        resumes from what their staging directory kept); their names."""

        def fail() -> list[str]:
            stopped = [e.name for e in self.entries.all()
                       if e.state == PULLING and e.source.startswith("hf:")]  # fmt: skip
            for name in stopped:
                self.entries.set_state(name, FAILED, STOPPED)
            return stopped

        return await self.db.call(fail)

    async def _join(self, spec: PullSpec, context: Context) -> pb.PullResponse | None:
        """The running pull of the entry to join (same source); refused when it pulls another
        source; None when none runs. Awaits only to refuse."""
        held = self.manager.holder(reservation(spec.name))
        if held is None:
            return None
        operation_id, kind = held
        if isinstance(kind, PullKind) and kind.spec.source == spec.source:
            return pb.PullResponse(operation_id=operation_id, joined=True)
        what = kind.spec.source if isinstance(kind, PullKind) else kind.name
        await context.abort(grpc.StatusCode.ALREADY_EXISTS,
                            f"entry {spec.name} is being pulled from {what} by operation "
                            f"{operation_id}: pull into another name, or cancel it "
                            f"(hubctl ops cancel {operation_id})")  # fmt: skip
        raise AssertionError("abort raises")
