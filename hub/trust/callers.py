"""Every call's caller: from the client certificate's serial, checked against the allowlist.

gRPC Python verifies the certificate chain during the handshake; it cannot consult a
revocation list there, so the interceptor (hub/trust/auth.py) looks each call's certificate
serial up in the credentials the hub issued (kept in memory, loaded from the database at
start) and sets `current` for the handler.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime

import grpc
from cryptography import x509

from hub.store.store import as_utc
from hub.store.trust import Allowed, Credential
from hub.trust.roles import Role


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
