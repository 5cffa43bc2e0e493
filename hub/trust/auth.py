"""The interceptor every call passes: who calls (hub/trust/callers.py), whether their role
may call the method, and the audit log's entry for the call, with refusals tallied."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from hub import services
from hub.store import db
from hub.store.trust import AuditEntry, aggregated
from hub.trust import roles
from hub.trust.callers import ANONYMOUS, INSECURE, Authenticator, Caller, Refused, current
from hub.trust.floods import RefusalTally
from hub.trust.roles import Role
from hub.trust.summary import summarize

log = logging.getLogger("gpufleet.audit")


Behavior = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class Call:
    """What the audit log says about a call, taken when it starts."""

    method: str
    peer: str
    detail: str


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc,type-arg]
    """Authenticates and authorizes every call, and writes the audit log."""

    def __init__(
        self, auth: Authenticator, record: Callable[[AuditEntry], None],
    ) -> None:  # fmt: skip
        self.auth = auth
        self.record = record
        self.refusals = RefusalTally()
        # method -> (the servicer's handler, its wrapped one): wrapped once per method, not
        # once per call (a stream held its own closures, about 1 KiB per connected agent).
        self._wrapped: dict[str, tuple[Any, Any]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(details)
        if handler is None:
            return handler
        method = details.method
        held = self._wrapped.get(method)
        if held is not None and held[0] is handler:
            return held[1]
        wrapped = self._wrap_handler(method, handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap_handler(self, method: str, handler: Any) -> Any:
        need = services.required(method)
        for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
            inner = getattr(handler, kind)
            if inner is not None:
                factory = getattr(grpc, f"{kind}_rpc_method_handler")
                parse = handler.request_deserializer
                if kind.startswith("unary_") and parse is not None:
                    parse = _tolerant(parse)  # streams: the servicer handles DecodeError
                return factory(
                    self._wrap(method, need, inner),
                    request_deserializer=parse,
                    response_serializer=handler.response_serializer,
                )
        return handler

    async def _admit(self, call: Call, need: Role | str, context: Any, request: Any) -> Caller:
        if isinstance(request, Malformed):
            text = f"malformed request: {request.reason}"
            self._audit(call, ANONYMOUS, grpc.StatusCode.INVALID_ARGUMENT.name, text)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, text)
        if self.auth.insecure:
            return INSECURE
        try:
            caller = self.auth.identify(context.auth_context())
        except Refused as refused:
            self._audit(call, ANONYMOUS, refused.code.name, str(refused))
            await context.abort(refused.code, str(refused))
            raise  # unreachable: abort raises
        if not roles.allowed(caller.role, need):
            verb = call.method.rsplit("/", 1)[-1]
            if caller.role == Role.ANONYMOUS:
                code = grpc.StatusCode.UNAUTHENTICATED
                text = (
                    f"{verb} needs a client certificate: log in with "
                    "`hubctl login --hub HUB --token T` (an admin creates T)"
                )
            else:
                code = grpc.StatusCode.PERMISSION_DENIED
                text = (
                    f"{caller.identity} has the {caller.role.label} role; "
                    f"{verb} needs {roles.describe(need)}"
                )
            self._audit(call, caller, code.name, text)
            await context.abort(code, text)
        return caller

    def _wrap(self, method: str, need: Role | str, inner: Behavior) -> Behavior:
        audited = roles.audited(method, need)

        def finish(call: Call, caller: Caller, context: Any, error: BaseException | None) -> None:
            """Only while the handler runs may the context be read: after the server stops,
            a finished call's context is gone (reading it crashed the hub)."""
            if not audited:
                return
            if error is None:
                self._audit(call, caller, "OK", "")
            elif isinstance(error, asyncio.CancelledError):
                self._audit(call, caller, "CANCELLED", "the call ended before its handler")
            else:
                self._audit(call, caller, _code(context), _details(context, error))

        def begin(request: Any, context: Any) -> Call:
            detail = summarize(request) if audited else ""
            return Call(method, str(context.peer())[:128], detail)

        if inspect.isasyncgenfunction(inner):

            async def streaming(request: Any, context: Any) -> AsyncIterator[Any]:
                call = begin(request, context)
                caller = await self._admit(call, need, context, request)
                current.set(caller)
                if audited:
                    self._audit(call, caller, "STARTED", "")
                try:
                    async for item in inner(request, context):
                        yield item
                except BaseException as exc:
                    finish(call, caller, context, exc)
                    await _storage_fault(context, exc)
                    raise
                finish(call, caller, context, None)

            return streaming

        async def unary(request: Any, context: Any) -> Any:
            call = begin(request, context)
            caller = await self._admit(call, need, context, request)
            current.set(caller)
            try:
                reply = await inner(request, context)
            except BaseException as exc:
                finish(call, caller, context, exc)
                await _storage_fault(context, exc)
                raise
            finish(call, caller, context, None)
            return reply

        return unary

    def _audit(self, call: Call, caller: Caller, result: str, text: str) -> None:
        action = call.method.removeprefix("/gpufleet.v1.").lstrip("/")
        entry = AuditEntry(
            at=self.auth.clock(), identity=caller.identity, peer=call.peer, action=action,
            detail=call.detail, result=result, message=text[:1000],
        )  # fmt: skip
        count = 1
        if aggregated(entry):  # a flood of anonymous attempts: one row per peer per minute
            entry, count = self.refusals.count(entry)
        if count == 1 or count % 100 == 0:
            log.info(
                "audit: %s %s from %s: %s %s%s", caller.identity, action, call.peer, result,
                call.detail, f" ({entry.message if count > 1 else text})" if text else "",
            )  # fmt: skip
        self.record(entry)


@dataclass(frozen=True)
class Malformed:
    """A request that did not parse: refused with INVALID_ARGUMENT, not a server error."""

    reason: str


def _tolerant(parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def tolerant(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError as exc:
            return Malformed(str(exc)[:200])

    return tolerant


def _code(context: Any) -> str:
    code = context.code() if hasattr(context, "code") else None
    if isinstance(code, grpc.StatusCode):
        return code.name
    return "CANCELLED" if code is None else str(code)


def _details(context: Any, error: BaseException) -> str:
    text = context.details() if hasattr(context, "details") else None
    return str(text or error or type(error).__name__)[:1000]


async def _storage_fault(context: Any, exc: BaseException) -> None:
    """A handler's database call hit a storage fault: one line for the caller, not UNKNOWN
    with an exception class (abort raises)."""
    if isinstance(exc, Exception) and db.storage_fault(exc):
        await context.abort(
            grpc.StatusCode.FAILED_PRECONDITION, db.cannot_persist(db.describe(exc))
        )
