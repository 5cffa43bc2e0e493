"""A mutual-TLS credential per simulated agent, issued in bulk instead of through Join.

Enrolling 10,000 agents through the Join RPC takes minutes and measures enrollment, not the
link. So, before the hub's first start, the benchmark does what the hub accepts unchanged:
it creates the CA in STATE_DIR/pki the way an operator brings their own (hub/trust/pki.py),
signs one client certificate per agent with the CA key (CN node/sim-NNNNN, OU agent, client
auth, as `Authority.issue` names them), and records each serial in the `credential` table,
the allowlist the hub loads at start (hub/trust/setup.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import insert

from gpufleet.tls import key_pem, new_key
from hub.store.db import make_engine, migrate, sqlite_url
from hub.store.trust import Credential
from hub.trust.pki import Authority, cert_pem

LIFETIME = timedelta(days=2)
ROLE = "agent"


def node_name(index: int) -> str:
    return f"sim-{index:05d}"


@dataclass(frozen=True)
class AgentCert:
    name: str
    key_pem: str
    cert_pem: str


def issue(authority: Authority, name: str, now: datetime) -> tuple[AgentCert, Credential]:
    key = new_key()
    identity = f"node/{name}"
    subject = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, identity),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ROLE),
    ])  # fmt: skip
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(authority.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        .sign(authority.key, hashes.SHA256())
    )
    credential = Credential(
        serial=format(cert.serial_number, "x"), identity=identity, role=ROLE,
        issued=now, not_after=now + LIFETIME,
    )  # fmt: skip
    return AgentCert(name, key_pem(key).decode(), cert_pem(cert).decode()), credential


def enroll_fleet(state_dir: Path, db_url: str | None, count: int) -> Path:
    """CA, schema and `count` agent credentials for a hub about to start on `state_dir`;
    the JSON-lines file of the agents' keys and certificates (one line per agent)."""
    now = datetime.now(UTC)
    authority = Authority.load_or_create(state_dir / "pki", now)
    engine = make_engine(db_url or sqlite_url(state_dir))
    try:
        migrate(engine)
        issued = [issue(authority, node_name(i), now) for i in range(count)]
        rows = [credential.model_dump() for _, credential in issued]
        with engine.begin() as connection:
            for chunk in _chunks(rows, 1000):
                connection.execute(insert(Credential), chunk)
    finally:
        engine.dispose()
    path = state_dir / "agents.jsonl"
    with path.open("w") as out:
        for cert, _ in issued:
            out.write(json.dumps(cert.__dict__) + "\n")
    return path


def read_certs(path: Path, first: int, count: int) -> list[AgentCert]:
    """Agents first .. first+count-1 of the file `enroll_fleet` wrote."""
    with path.open() as lines:
        picked = [line for i, line in enumerate(lines) if first <= i < first + count]
    return [AgentCert(**json.loads(line)) for line in picked]


def _chunks(rows: list[dict[str, object]], size: int) -> Iterator[list[dict[str, object]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]
