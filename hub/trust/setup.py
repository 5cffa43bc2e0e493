"""Bring up the hub's trust at start: CA, server certificate, admin bootstrap, allowlist."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import grpc
from cryptography.hazmat.primitives.serialization import Encoding

from gpufleet.tls import key_pem, make_csr, new_key, pin, write_private, write_public
from hub.store.db import Database
from hub.store.trust import Credential, TrustStore
from hub.trust.callers import Authenticator
from hub.trust.pki import Authority, load_cert
from hub.trust.roles import Role
from hub.trust.service import Issuer

log = logging.getLogger(__name__)

ADMIN_IDENTITY = "user/admin"
ADMIN_LIFETIME = timedelta(days=365)
RENEW_BEFORE = timedelta(days=30)


@dataclass
class Trust:
    issuer: Issuer
    auth: Authenticator
    server_key: bytes
    server_chain: bytes
    pin: str

    def mutual_tls(self) -> grpc.ServerCredentials:
        """The main port: every client shows a certificate this hub's CA signed."""
        return grpc.ssl_server_credentials(
            [(self.server_key, self.server_chain)],
            root_certificates=self.issuer.authority.ca_pem,
            require_client_auth=True,
        )

    def server_tls(self) -> grpc.ServerCredentials:
        """The enrollment port: clients without a certificate yet."""
        return grpc.ssl_server_credentials([(self.server_key, self.server_chain)])


def bootstrap_admin(pki: Path, authority: Authority, store: TrustStore, now: datetime) -> None:
    """STATE_DIR/pki/admin.{crt,key}: the first admin credential, for hubctl on this host.

    Made at the first start and renewed when it nears its end. A certificate someone
    revoked stays revoked: delete both files and restart the hub to bootstrap again."""
    crt, key_path = pki / "admin.crt", pki / "admin.key"
    if crt.exists() and key_path.exists():
        cert = load_cert(crt)
        serial = format(cert.serial_number, "x")
        known = store.credential(serial)
        if known is not None:
            fresh = cert.not_valid_after_utc - now > RENEW_BEFORE
            if fresh or known.revoked is not None:
                return
        elif cert.issuer == authority.cert.subject and cert.not_valid_after_utc > now:
            # A new database under the same CA: the file on this host is the credential.
            store.add_credential(_credential(serial, cert.not_valid_after_utc, now))
            return
    key = new_key()
    issued = authority.issue(make_csr(key), ADMIN_IDENTITY, "admin", ADMIN_LIFETIME, now)
    store.add_credential(_credential(format(issued.serial, "x"), issued.not_after, now))
    write_private(key_path, key_pem(key))
    write_public(crt, issued.pem)
    log.info("admin credential for hubctl on this host: %s", crt)


def _credential(serial: str, not_after: datetime, now: datetime) -> Credential:
    return Credential(
        serial=serial, identity=ADMIN_IDENTITY, role=Role.ADMIN.label, issued=now,
        not_after=not_after,
    )  # fmt: skip


async def prepare(
    state_dir: Path, db: Database, store: TrustStore, cert_ttl: timedelta,
    clock: Callable[[], datetime],
) -> Trust:  # fmt: skip
    pki = state_dir / "pki"
    now = clock()
    authority = Authority.load_or_create(pki, now)
    server_key, server_chain = authority.server_pair(pki, now)
    await db.call(bootstrap_admin, pki, authority, store, now)
    auth = Authenticator(insecure=False, clock=clock)
    auth.load(await db.call(store.valid_credentials, now))
    issuer = Issuer(authority, db, store, auth, cert_ttl, clock)
    leaf = load_cert(pki / "server.crt").public_bytes(Encoding.DER)
    return Trust(issuer, auth, server_key, server_chain, pin(leaf))
