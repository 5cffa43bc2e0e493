"""TLS pieces the hub, the agent and hubctl share: keys, requests, files, the hub's pin."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

# Clients check the hub's certificate for this name, whatever address they dial: only the
# hub's server certificate carries it (client identities contain a '/', never a DNS name).
SERVER_NAME = "gpufleet-hub"

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_csr(key: PrivateKey) -> bytes:
    """A certificate request for `key`; the hub decides the name it certifies."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gpufleet")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


def write_private(path: Path, data: bytes) -> None:
    """Write atomically, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)


def write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def pin(cert_der: bytes) -> str:
    """SHA-256 of a certificate's public key, 32 hex digits: join tokens carry the hub's."""
    cert = x509.load_der_x509_certificate(cert_der)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(spki)
    return digest.finalize().hex()[:32]


def fetch_server_cert(host: str, port: int, timeout: float = 10.0) -> bytes:
    """The certificate a TLS server presents, unverified (DER): check it against a pin."""
    import socket

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection((host, port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=SERVER_NAME) as conn,
    ):
        der = conn.getpeercert(binary_form=True)
    if der is None:
        raise ssl.SSLError("the server presented no certificate")
    return der


def der_to_pem(der: bytes) -> bytes:
    return ssl.DER_cert_to_PEM_cert(der).encode()


def channel_credentials(
    ca_pem: bytes, key: bytes | None = None, cert: bytes | None = None
) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(ca_pem, key, cert)


# Channel options for any TLS channel to the hub (see SERVER_NAME).
TLS_OPTIONS = [("grpc.ssl_target_name_override", SERVER_NAME)]


def split_address(address: str) -> tuple[str, int]:
    """'host:port' or '[v6]:port' into its parts; ValueError names the problem."""
    host, sep, port = address.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or not host:
        raise ValueError(f"{address!r} is not HOST:PORT")
    return host.strip("[]"), int(port)
