"""Enrollment (join with a token) and Trust (renew, tokens, removal, credentials, audit)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, NoReturn

import grpc

from gpufleet.tokens import new_token, parse_token
from gpufleet.v1 import trust_pb2 as pb
from gpufleet.v1 import trust_pb2_grpc
from hub import limits
from hub.convert import NODE_NAME, timestamp
from hub.sessions import SessionRegistry
from hub.store.db import Database
from hub.store.trust import Credential, JoinToken, TokenRefused, TrustStore, aware
from hub.trust import callers
from hub.trust.callers import Authenticator
from hub.trust.floods import PeerLimiter, peer_host, retry_in
from hub.trust.pki import Authority, PkiError
from hub.trust.roles import Role

log = logging.getLogger(__name__)

USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
GATEWAY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_KIND = {Role.GATEWAY: "gateway"}  # the identity's kind; operators are user/NAME
LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$")
DEFAULT_TOKEN_TTL = timedelta(hours=1)
MAX_TOKEN_TTL = timedelta(days=7)
AUDIT_MOST = 1000  # entries in one ListAudit answer


class Issuer:
    """Signs a CSR for an identity and puts the certificate on the allowlist."""

    def __init__(
        self, authority: Authority, db: Database, store: TrustStore, auth: Authenticator,
        cert_ttl: timedelta, clock: Callable[[], datetime],
    ) -> None:  # fmt: skip
        self.authority, self.db, self.store, self.auth = authority, db, store, auth
        self.cert_ttl, self.clock = cert_ttl, clock

    async def issue(
        self, csr_pem: str, identity: str, role: Role, labels: dict[str, str], ttl: timedelta
    ) -> tuple[bytes, Credential]:
        now = self.clock()
        issued = self.authority.issue(csr_pem.encode(), identity, role.label, ttl, now)
        credential = Credential(
            serial=format(issued.serial, "x"), identity=identity, role=role.label,
            labels=labels, issued=now, not_after=issued.not_after,
        )  # fmt: skip
        await self.db.call(self.store.add_credential, credential)
        self.auth.admit(credential)
        return issued.pem, credential


Context = grpc.aio.ServicerContext[Any, Any]


async def _abort(context: Context, code: grpc.StatusCode, text: str) -> NoReturn:
    await context.abort(code, text)
    raise AssertionError("unreachable: abort raises")


class EnrollmentService(trust_pb2_grpc.EnrollmentServicer):  # type: ignore[misc]
    def __init__(self, issuer: Issuer, limiter: PeerLimiter | None = None) -> None:
        self.issuer = issuer
        # Refused joins per peer host: 10 at once, then one every 2 s; good ones are free.
        self.limiter = limiter or PeerLimiter(burst=10, per_second=0.5, clock=time.monotonic)

    async def Join(self, request: pb.JoinRequest, context: Context) -> pb.JoinResponse:
        host = peer_host(context.peer())
        wait = self.limiter.take(host)
        if wait:
            await _abort(
                context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"too many refused enrollment attempts from {host}: retry in "
                f"{retry_in(wait)} s with a valid token (hubctl tokens create)",
            )  # fmt: skip
        reply = await self._join(request, context)  # a refusal aborts: its attempt counts
        self.limiter.refund(host)
        return reply

    async def _join(self, request: pb.JoinRequest, context: Context) -> pb.JoinResponse:
        try:
            token = parse_token(request.token)
        except ValueError as exc:
            await _abort(context, grpc.StatusCode.UNAUTHENTICATED, str(exc))
        issuer = self.issuer
        now = issuer.clock()
        found = await issuer.db.call(issuer.store.token, token.id)
        try:
            if found is None or found.used is not None or aware(found.expires) <= now:
                await issuer.db.call(issuer.store.redeem, token.id, token.secret_hash, "", now)
        except TokenRefused as exc:  # always: redeem() names the reason
            await _abort(context, grpc.StatusCode.UNAUTHENTICATED, str(exc))
        assert found is not None
        role = Role.parse(found.role)
        if role == Role.AGENT:
            if not NODE_NAME.match(request.name):
                await _abort(
                    context, grpc.StatusCode.INVALID_ARGUMENT,
                    f"invalid node name {request.name[:64]!r}: letters, digits, '.', '_', '-'",
                )  # fmt: skip
            identity = f"node/{request.name}"
        else:  # operators and gateways are named by their token
            identity = f"{_KIND.get(role, 'user')}/{found.name}"
        if await issuer.db.call(issuer.store.active_identity, identity, now):
            await _abort(context, grpc.StatusCode.ALREADY_EXISTS, _taken(identity, request.name))
        try:
            used = await issuer.db.call(
                issuer.store.redeem, token.id, token.secret_hash, identity, now
            )
        except TokenRefused as exc:
            await _abort(context, grpc.StatusCode.UNAUTHENTICATED, str(exc))
        try:
            pem, credential = await issuer.issue(
                request.csr_pem, identity, role, dict(used.labels), issuer.cert_ttl
            )
        except PkiError as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        log.info("enrolled %s (%s) with token %s", identity, role.label, token.id)
        return pb.JoinResponse(
            identity=identity, role=role.to_proto(), certificate_pem=pem.decode(),
            ca_pem=issuer.authority.ca_pem.decode(), labels=credential.labels,
        )  # fmt: skip


def token_to_proto(token: JoinToken) -> pb.JoinToken:
    return pb.JoinToken(
        id=token.id, role=Role.parse(token.role).to_proto(), name=token.name,
        labels=token.labels, created_by=token.created_by, created=timestamp(token.created),
        expires=timestamp(token.expires), used=timestamp(token.used), used_by=token.used_by,
    )  # fmt: skip


class TrustService(trust_pb2_grpc.TrustServicer):  # type: ignore[misc]
    """`issuer` is None on an --insecure hub: no certificates, but removal, audit, WhoAmI."""

    def __init__(
        self, db: Database, store: TrustStore, auth: Authenticator, registry: SessionRegistry,
        issuer: Issuer | None, pin: str, clock: Callable[[], datetime],
    ) -> None:  # fmt: skip
        self.db, self.store, self.auth, self.registry = db, store, auth, registry
        self._issuer, self.pin, self.clock = issuer, pin, clock

    async def issuer(self, context: Context) -> Issuer:
        if self._issuer is None:
            await _abort(
                context, grpc.StatusCode.FAILED_PRECONDITION,
                "this hub runs with --insecure: it issues no certificates or tokens",
            )  # fmt: skip
        return self._issuer

    async def Renew(self, request: pb.RenewRequest, context: Context) -> pb.RenewResponse:
        caller = callers.current.get()
        if caller.not_after is None:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, "nothing to renew")
        issuer = await self.issuer(context)
        try:
            pem, credential = await issuer.issue(
                request.csr_pem, caller.identity, caller.role, dict(caller.labels),
                issuer.cert_ttl,
            )  # fmt: skip
        except PkiError as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        log.info("renewed the certificate of %s until %s", caller.identity, credential.not_after)
        return pb.RenewResponse(
            certificate_pem=pem.decode(), not_after=timestamp(credential.not_after)
        )

    async def WhoAmI(self, request: pb.WhoAmIRequest, context: Context) -> pb.WhoAmIResponse:
        caller = callers.current.get()
        return pb.WhoAmIResponse(
            identity=caller.identity, role=caller.role.to_proto(),
            not_after=timestamp(caller.not_after), insecure=caller is callers.INSECURE,
        )  # fmt: skip

    async def CreateToken(
        self, request: pb.CreateTokenRequest, context: Context
    ) -> pb.CreateTokenResponse:
        role = Role.from_proto(request.role)
        if role == Role.ANONYMOUS:
            role = Role.AGENT
        ttl = timedelta(seconds=request.ttl_seconds) if request.ttl_seconds else DEFAULT_TOKEN_TTL
        problem = _token_problem(role, ttl, request)
        if problem:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, problem)
        await self.issuer(context)
        text, parsed = new_token(self.pin)
        now = self.clock()
        token = JoinToken(
            id=parsed.id, secret_hash=parsed.secret_hash, role=role.label,
            name=request.name if role != Role.AGENT else "", labels=dict(request.labels),
            created_by=callers.current.get().identity, created=now, expires=now + ttl,
        )  # fmt: skip
        await self.db.call(self.store.add_token, token)
        return pb.CreateTokenResponse(token=text, info=token_to_proto(token))

    async def ListTokens(
        self, request: pb.ListTokensRequest, context: Context
    ) -> pb.ListTokensResponse:
        tokens = await self.db.call(self.store.tokens)
        return pb.ListTokensResponse(tokens=[token_to_proto(t) for t in tokens])

    async def RemoveNode(
        self, request: pb.RemoveNodeRequest, context: Context
    ) -> pb.RemoveNodeResponse:
        name = request.name
        known = await self.db.call(self.store.node_exists, name)
        enrolled = await self.db.call(self.store.active_identity, f"node/{name}", self.clock())
        if not known and not enrolled:
            await _abort(
                context, grpc.StatusCode.NOT_FOUND,
                f"no node named {name[:64]!r}: see `hubctl nodes`",
            )  # fmt: skip
        who = callers.current.get().identity
        serials = await self.db.call(self.store.remove_node, name, who, self.clock())
        self.auth.revoke(serials)
        session = self.registry.get(name)
        if session is not None:
            session.close(f"node {name} was removed by {who}", grpc.StatusCode.UNAUTHENTICATED)
        log.warning("node %s removed by %s; %d certificates revoked", name, who, len(serials))
        return pb.RemoveNodeResponse(
            revoked_certificates=len(serials), was_connected=session is not None
        )

    async def ListCredentials(
        self, request: pb.ListCredentialsRequest, context: Context
    ) -> pb.ListCredentialsResponse:
        rows = await self.db.call(self.store.credentials)
        return pb.ListCredentialsResponse(credentials=[
            pb.Credential(
                serial=row.serial, identity=row.identity, role=Role.parse(row.role).to_proto(),
                issued=timestamp(row.issued), not_after=timestamp(row.not_after),
                revoked=timestamp(row.revoked), revoked_by=row.revoked_by,
            )
            for row in rows
        ])  # fmt: skip

    async def RevokeCredential(
        self, request: pb.RevokeCredentialRequest, context: Context
    ) -> pb.RevokeCredentialResponse:
        who = callers.current.get().identity
        serials = await self.db.call(self.store.revoke, request.identity, who, self.clock())
        if not serials:
            await _abort(
                context, grpc.StatusCode.NOT_FOUND,
                f"{request.identity!r} has no valid certificate: see `hubctl credentials`",
            )  # fmt: skip
        self.auth.revoke(serials)
        kind, _, name = request.identity.partition("/")
        session = self.registry.get(name) if kind == "node" else None
        if session is not None:
            session.close(f"certificate revoked by {who}", grpc.StatusCode.UNAUTHENTICATED)
        return pb.RevokeCredentialResponse(revoked_certificates=len(serials))

    async def ListAudit(
        self, request: pb.ListAuditRequest, context: Context
    ) -> pb.ListAuditResponse:
        try:
            limit = limits.limit("limit", request.limit, 50, most=AUDIT_MOST)
        except limits.OutOfBounds as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"{exc} entries")
        rows = await self.db.call(self.store.audit_log, limit)
        return pb.ListAuditResponse(entries=[
            pb.AuditEntry(
                at=timestamp(row.at), identity=row.identity, peer=row.peer, action=row.action,
                detail=row.detail, result=row.result, message=row.message,
            )
            for row in rows
        ])  # fmt: skip


def _token_problem(role: Role, ttl: timedelta, request: pb.CreateTokenRequest) -> str:
    if ttl > MAX_TOKEN_TTL:
        return f"--ttl {ttl} is longer than the {MAX_TOKEN_TTL.days} days a token may live"
    for key, value in request.labels.items():
        if not LABEL.match(key) or len(value) > 63:
            return f"invalid label {key}={value[:64]}: keys like role or gpu.vendor, values <= 63"
    if role == Role.AGENT:
        return ("--name is for operator and gateway tokens; a node names itself at join"
                if request.name else "")  # fmt: skip
    if request.labels:
        return "--labels are for node tokens"
    if role == Role.GATEWAY:
        if not GATEWAY_NAME.match(request.name):
            return (f"gateway tokens need --name (1 to 63 letters, digits, . _ -: the gateway "
                    f"enrolls as gateway/NAME), got {request.name[:64]!r}")  # fmt: skip
        return ""
    if not USER_NAME.match(request.name):
        return f"operator tokens need --name (letters, digits, . _ @ -), got {request.name!r}"
    return ""


def _taken(identity: str, name: str) -> str:
    """A join for an identity that is enrolled: the token is not used, so say what to do."""
    if identity.startswith("node/"):
        return (
            f"{identity} is already enrolled; remove it first (hubctl nodes remove {name}) if "
            f"this host replaces it, else pick another name: join again with the same token "
            f"and --name OTHER"
        )
    if identity.startswith("gateway/"):
        return (
            f"{identity} is already enrolled; revoke it first (hubctl credentials revoke "
            f"{identity}) if this gateway replaces it, else create a token with another --name "
            f"(hubctl tokens create --role gateway --name OTHER)"
        )
    return (f"{identity} is already enrolled; remove it first "
            f"(hubctl credentials revoke {identity})")  # fmt: skip
