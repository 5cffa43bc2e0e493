"""The hub as its own certificate authority: CA, server certificate, client certificates.

Files live in STATE_DIR/pki (keys 0600). An operator who wants their own CA puts `ca.crt` and
`ca.key` there before the first start; the hub then signs its server certificate with it.
Client certificates name an identity ("node/gpu-a", "user/alice") and carry the role as
their OU; the hub trusts neither field: it looks the serial up in its credentials table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gpufleet.tls import SERVER_NAME, PrivateKey, key_pem, new_key, write_private, write_public

CA_LIFETIME = timedelta(days=3650)
SERVER_LIFETIME = timedelta(days=365)
RENEW_BEFORE = timedelta(days=30)
CLOCK_SKEW = timedelta(minutes=5)


class PkiError(Exception):
    """A certificate, key or request is unusable; the message says which and why."""


@dataclass(frozen=True)
class Issued:
    pem: bytes
    serial: int
    not_after: datetime


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError as exc:
        raise PkiError(f"{path} is not a PEM certificate ({exc})") from None


def load_key(path: Path) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise PkiError(f"{path} is not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise PkiError(f"{path}: only EC and RSA keys are supported")
    return key


def _name(common: str, unit: str | None = None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COMMON_NAME, common)]
    if unit:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
    return x509.Name(parts)


def _base(
    subject: x509.Name,
    issuer: x509.Name,
    public: CertificatePublicKeyTypes,
    now: datetime,
    life: timedelta,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        # Back-dated for clocks a little behind, by at most a tenth of the lifetime, so an
        # agent renewing at 2/3 of (not_after - not_before) renews late enough.
        .not_valid_before(now - min(CLOCK_SKEW, life / 10))
        .not_valid_after(now + life)
    )


class Authority:
    """Signs the hub's server certificate and every client certificate."""

    def __init__(self, cert: x509.Certificate, key: PrivateKey) -> None:
        self.cert = cert
        self.key = key
        self.ca_pem = cert_pem(cert)

    @classmethod
    def load_or_create(cls, pki: Path, now: datetime) -> Authority:
        crt, key_path = pki / "ca.crt", pki / "ca.key"
        if crt.exists() != key_path.exists():
            missing = key_path if crt.exists() else crt
            raise PkiError(f"{missing} is missing: provide both ca.crt and ca.key, or neither")
        if crt.exists():
            return cls(load_cert(crt), load_key(key_path))
        key = new_key()
        name = _name("gpufleet hub CA")
        cert = (
            _base(name, name, key.public_key(), now, CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        write_private(key_path, key_pem(key))
        write_public(crt, cert_pem(cert))
        return cls(cert, key)

    def server_pair(self, pki: Path, now: datetime) -> tuple[bytes, bytes]:
        """(key PEM, certificate chain PEM) for the gRPC ports; made or renewed as needed."""
        crt, key_path = pki / "server.crt", pki / "server.key"
        if crt.exists() and key_path.exists():
            cert = load_cert(crt)
            fresh = cert.not_valid_after_utc - now > RENEW_BEFORE
            if fresh and cert.issuer == self.cert.subject:
                return key_path.read_bytes(), crt.read_bytes() + self.ca_pem
        key = new_key()
        san = x509.SubjectAlternativeName([x509.DNSName(SERVER_NAME)])
        cert = (
            _base(_name(SERVER_NAME), self.cert.subject, key.public_key(), now, SERVER_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(san, critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .sign(self.key, hashes.SHA256())
        )
        write_private(key_path, key_pem(key))
        write_public(crt, cert_pem(cert))
        return key_pem(key), cert_pem(cert) + self.ca_pem

    def issue(
        self, csr_pem: bytes, identity: str, role: str, life: timedelta, now: datetime
    ) -> Issued:
        """A client certificate for the key in `csr_pem`, naming `identity`."""
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError:
            raise PkiError("csr_pem is not a PEM certificate signing request") from None
        try:
            valid = csr.is_signature_valid
        except InvalidSignature:
            valid = False
        if not valid:
            raise PkiError("the certificate request's signature does not match its key")
        public = csr.public_key()
        if isinstance(public, rsa.RSAPublicKey) and public.key_size < 2048:
            raise PkiError("RSA keys must have at least 2048 bits")
        if not isinstance(public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise PkiError("only EC and RSA keys are supported")
        cert = (
            _base(_name(identity, role), self.cert.subject, public, now, life)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
            .sign(self.key, hashes.SHA256())
        )
        return Issued(cert_pem(cert), cert.serial_number, cert.not_valid_after_utc)
