"""Every call's caller: from the client certificate's serial, checked against the allowlist.

gRPC Python verifies the certificate chain during the handshake; it cannot consult a
revocation list there, so the interceptor looks each call's certificate serial up in the
credentials the hub issued (kept in memory, loaded from the database at start).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import grpc
from cryptography import x509
from google.protobuf.message import DecodeError

from hub import services
from hub.store import db
from hub.store.store import as_utc
from hub.store.trust import Allowed, AuditEntry, Credential, aggregated
from hub.trust import roles
from hub.trust.floods import RefusalTally
from hub.trust.roles import Role
from hub.trust.summary import summarize

log = logging.getLogger("gpufleet.audit")


@dataclass(frozen=True, slots=True)
class Caller:
    identity: str
    role: Role
    serial: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    not_after: datetime | None = None

    @property
    def node_name(self) -> str | None:
        """The node an agent certificate names; None for anyone else."""
        kind, _, name = self.identity.partition("/")
        return name if kind == "node" else None


ANONYMOUS = Caller("anonymous", Role.ANONYMOUS)
INSECURE = Caller("insecure", Role.ADMIN)  # --insecure: no one is authenticated
current: ContextVar[Caller] = ContextVar("caller", default=ANONYMOUS)


class Refused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class Authenticator:
    def __init__(self, insecure: bool, clock: Callable[[], datetime]) -> None:
        self.insecure = insecure
        self.clock = clock
        self._valid: dict[str, Allowed] = {}
        # sha256 of a certificate's PEM -> its serial: a digest, not the PEM (about 600 bytes)
        self._serials: OrderedDict[bytes, str] = OrderedDict()

    def load(self, credentials: Iterable[Allowed]) -> None:
        for allowed in credentials:
            self._valid[allowed.serial] = allowed

    def admit(self, credential: Credential) -> None:
        self._valid[credential.serial] = Allowed.of(credential)

    def revoke(self, serials: Iterable[str]) -> None:
        for serial in serials:
            self._valid.pop(serial, None)

    def _serial(self, pem: bytes) -> str:
        digest = hashlib.sha256(pem).digest()
        serial = self._serials.get(digest)
        if serial is None:
            serial = format(x509.load_pem_x509_certificate(pem).serial_number, "x")
            self._serials[digest] = serial
            if len(self._serials) > 4096:
                self._serials.popitem(last=False)
        return serial

    def identify(self, auth_context: Mapping[str, Iterable[bytes]]) -> Caller:
        if self.insecure:
            return INSECURE
        pems = list(auth_context.get("x509_pem_cert", ()))
        if not pems:
            return ANONYMOUS
        serial = self._serial(pems[0])
        credential = self._valid.get(serial)
        if credential is None:
            raise Refused(
                grpc.StatusCode.UNAUTHENTICATED,
                f"certificate {serial[:16]} is revoked or was not issued by this hub: "
                "enroll again with a new token",
            )
        not_after = as_utc(credential.not_after)
        if not_after is None or not_after <= self.clock():
            raise Refused(
                grpc.StatusCode.UNAUTHENTICATED,
                f"certificate of {credential.identity} expired: enroll again",
            )
        return Caller(
            credential.identity, Role.parse(credential.role), serial,
            dict(credential.labels), not_after,
        )  # fmt: skip


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
