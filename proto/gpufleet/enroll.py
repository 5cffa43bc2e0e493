"""Trading a join token for a certificate: `gpufleet-agent join` and `hubctl login`.

The new host trusts nothing yet, so it first checks the hub's certificate against the pin the
token carries, then talks TLS to exactly that certificate and sends its key's request.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

import grpc

from gpufleet.tls import (
    SERVER_NAME,
    TLS_OPTIONS,
    der_to_pem,
    fetch_server_cert,
    key_pem,
    make_csr,
    new_key,
    pin,
    split_address,
)
from gpufleet.tokens import parse_token
from gpufleet.v1 import trust_pb2, trust_pb2_grpc

TIMEOUT_S = 15.0


class EnrollError(Exception):
    """One line for the user: what failed and what to do."""


@dataclass(frozen=True)
class Enrolled:
    identity: str
    role: int
    key_pem: bytes
    cert_pem: bytes
    ca_pem: bytes
    labels: dict[str, str] = field(default_factory=dict)


def enrollment_address(hub: str, port: int | None = None) -> tuple[str, int]:
    """The hub's enrollment port: by default the one after its main port."""
    try:
        host, main_port = split_address(hub)
    except ValueError as exc:
        raise EnrollError(f"--hub {exc}: expected e.g. hub.example:7443") from None
    return host, port or main_port + 1


def join(hub: str, token_text: str, name: str = "", port: int | None = None) -> Enrolled:
    try:
        token = parse_token(token_text)
    except ValueError as exc:
        raise EnrollError(str(exc)) from None
    host, enroll_port = enrollment_address(hub, port)
    where = f"{host}:{enroll_port}"
    try:
        der = fetch_server_cert(host, enroll_port, TIMEOUT_S)
    except (OSError, ssl.SSLError) as exc:
        raise EnrollError(
            f"cannot reach the hub's enrollment port {where}: {exc} (is the hub running? "
            "is this its address? pass --enroll-port if it is not the main port + 1)"
        ) from None
    if pin(der) != token.pin:
        raise EnrollError(
            f"the server at {where} is not the hub that issued this token (its certificate "
            "does not match the token's pin): check the address"
        )
    key = new_key()
    credentials = grpc.ssl_channel_credentials(der_to_pem(der))
    request = trust_pb2.JoinRequest(
        token=token_text.strip(), csr_pem=make_csr(key).decode(), name=name
    )
    with grpc.secure_channel(where, credentials, options=TLS_OPTIONS) as channel:
        try:
            reply: trust_pb2.JoinResponse = trust_pb2_grpc.EnrollmentStub(channel).Join(
                request, timeout=TIMEOUT_S
            )
        except grpc.RpcError as exc:
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            raise EnrollError(f"the hub refused to enroll: {details}") from None
    return Enrolled(
        reply.identity, reply.role, key_pem(key), reply.certificate_pem.encode(),
        reply.ca_pem.encode(), dict(reply.labels),
    )  # fmt: skip


__all__ = ["SERVER_NAME", "EnrollError", "Enrolled", "enrollment_address", "join"]
