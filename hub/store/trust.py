"""Join tokens, issued certificates (the allowlist) and the audit log; run on Database's thread.

A client certificate is accepted only while its serial is in `credential` and not revoked, so
revocation survives restarts and a certificate the hub never recorded is worth nothing.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import JSON, Column, DateTime, Engine, Table, insert, update
from sqlalchemy import select as sql_select
from sqlmodel import Field, Session, SQLModel, col, delete, select

from hub.store.deployments import ModelDeployment
from hub.store.models import Gpu, Node
from hub.store.store import as_utc


def _utc_column(nullable: bool) -> Column[datetime]:
    return Column(DateTime(timezone=True), nullable=nullable)


class JoinToken(SQLModel, table=True):
    __tablename__ = "join_token"

    id: str = Field(primary_key=True, max_length=16)
    secret_hash: str = Field(max_length=64)  # sha256 hex of the secret part
    role: str = Field(max_length=16)  # agent | viewer | operator | admin
    name: str = Field(default="", max_length=253)  # operators: who it is for
    labels: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_by: str = Field(default="", max_length=300)
    created: datetime = Field(sa_column=_utc_column(nullable=False))
    expires: datetime = Field(sa_column=_utc_column(nullable=False))
    used: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    used_by: str = Field(default="", max_length=300)


@dataclass(frozen=True, slots=True)
class Allowed:
    """What the hub keeps in memory of a valid credential, its allowlist entry: about a quarter
    of an ORM row's memory (10,000 agents' credentials were 16 MiB as ORM rows)."""

    serial: str
    identity: str
    role: str
    labels: Mapping[str, str]
    not_after: datetime

    @staticmethod
    def of(credential: Credential) -> Allowed:
        return Allowed(credential.serial, credential.identity, credential.role,
                       dict(credential.labels), credential.not_after)  # fmt: skip


class Credential(SQLModel, table=True):
    __tablename__ = "credential"

    serial: str = Field(primary_key=True, max_length=48)  # hex
    identity: str = Field(index=True, max_length=300)  # node/NAME or user/NAME
    role: str = Field(max_length=16)
    labels: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    issued: datetime = Field(sa_column=_utc_column(nullable=False))
    not_after: datetime = Field(sa_column=_utc_column(nullable=False))
    revoked: datetime | None = Field(default=None, sa_column=_utc_column(nullable=True))
    revoked_by: str = Field(default="", max_length=300)


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_entry"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_column=_utc_column(nullable=False))
    identity: str = Field(max_length=300)
    peer: str = Field(default="", max_length=128)
    action: str = Field(max_length=96)
    detail: str = Field(default="")
    result: str = Field(max_length=32)
    message: str = Field(default="")


AUDIT: Table = AuditEntry.__table__  # type: ignore[attr-defined]


class TokenRefused(Exception):
    """The token cannot be used; the message is safe to show to the caller."""


class TrustStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def add_token(self, token: JoinToken) -> None:
        with self._session() as session:
            session.add(token)
            session.commit()

    def tokens(self) -> list[JoinToken]:
        with self._session() as session:
            return list(session.exec(select(JoinToken).order_by(col(JoinToken.created).desc())))

    def token(self, token_id: str) -> JoinToken | None:
        with self._session() as session:
            return session.get(JoinToken, token_id)

    def redeem(self, token_id: str, secret_hash: str, who: str, now: datetime) -> JoinToken:
        """Mark the token used, atomically: a second redemption finds it used."""
        with self._session() as session:
            token = session.get(JoinToken, token_id)
            if token is None or not _same(token.secret_hash, secret_hash):
                raise TokenRefused("invalid join token: create one with `hubctl tokens create`")
            if token.used is not None:
                raise TokenRefused(
                    f"join token {token_id} was already used by {token.used_by}; tokens are "
                    "single use: create a new one with `hubctl tokens create`"
                )
            if aware(token.expires) <= now:
                raise TokenRefused(
                    f"join token {token_id} expired at {aware(token.expires):%Y-%m-%d %H:%M} "
                    "UTC: create a new one with `hubctl tokens create`"
                )
            claimed = session.execute(
                update(JoinToken)
                .where(col(JoinToken.id) == token_id, col(JoinToken.used).is_(None))
                .values(used=now, used_by=who)
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                raise TokenRefused(f"join token {token_id} was already used")
            session.commit()
            return token

    def add_credential(self, credential: Credential) -> None:
        with self._session() as session:
            session.add(credential)
            session.commit()

    def credentials(self) -> list[Credential]:
        with self._session() as session:
            query = select(Credential).order_by(col(Credential.issued).desc())
            return list(session.exec(query))

    def credential(self, serial: str) -> Credential | None:
        """The credential of a certificate serial (hex), if the hub issued it."""
        with self._session() as session:
            return session.get(Credential, serial)

    def valid_credentials(self, now: datetime) -> list[Allowed]:
        """What the hub loads at start into its in-memory allowlist (plain rows, not ORM)."""
        table = Credential.__table__  # type: ignore[attr-defined]
        query = sql_select(
            table.c.serial, table.c.identity, table.c.role, table.c.labels, table.c.not_after
        ).where(table.c.revoked.is_(None), table.c.not_after > now)
        with self.engine.connect() as connection:
            return [
                Allowed(serial, identity, role, labels or {}, not_after)
                for serial, identity, role, labels, not_after in connection.execute(query)
            ]

    def active_identity(self, identity: str, now: datetime) -> bool:
        """Whether `identity` holds a certificate that is neither revoked nor expired."""
        with self._session() as session:
            query = select(Credential.serial).where(
                Credential.identity == identity,
                col(Credential.revoked).is_(None),
                col(Credential.not_after) > now,
            )
            return session.exec(query).first() is not None

    def revoke(self, identity: str, who: str, now: datetime) -> list[str]:
        """Revoke every certificate of `identity`; the revoked serials."""
        with self._session() as session:
            rows = session.exec(
                select(Credential).where(
                    Credential.identity == identity, col(Credential.revoked).is_(None)
                )
            ).all()
            for row in rows:
                row.revoked, row.revoked_by = now, who
                session.add(row)
            session.commit()
            return [row.serial for row in rows]

    def remove_node(self, name: str, who: str, now: datetime) -> list[str]:
        """Revoke the node's certificates and forget the node with its GPUs and the model
        deployment recorded for it (a node of that name joining later runs none of it)."""
        serials = self.revoke(f"node/{name}", who, now)
        with self._session() as session:
            session.execute(delete(ModelDeployment).where(col(ModelDeployment.node) == name))
            node = session.exec(select(Node).where(Node.name == name)).first()
            if node is not None:
                for gpu in session.exec(select(Gpu).where(Gpu.node_id == node.id)):
                    session.delete(gpu)
                session.delete(node)
            session.commit()
        return serials

    def node_exists(self, name: str) -> bool:
        with self._session() as session:
            return session.exec(select(Node.id).where(Node.name == name)).first() is not None

    def audit(self, entry: AuditEntry) -> None:
        """Store an audit entry; a refused anonymous attempt updates its peer's row of the
        minute (RefusalTally counts them) instead of adding one, so a flood stays small."""
        self.audit_many([entry])

    def audit_many(self, entries: Sequence[AuditEntry]) -> None:
        """Store audit entries in order, in one transaction (hub/trust/audit_log.py gathers
        those of one turn of the loop: a reconnect storm's 10,000 agent streams each start
        one): runs of plain entries in one insert, refused anonymous attempts as `audit`."""
        with self._session() as session:
            plain: list[dict[str, object]] = []
            for entry in entries:
                if not aggregated(entry):
                    plain.append(entry.model_dump(exclude={"id"}))
                    continue
                if plain:
                    session.execute(insert(AUDIT), plain)  # Core: one executemany
                    plain = []
                found = session.exec(
                    select(AuditEntry).where(
                        AuditEntry.identity == entry.identity, AuditEntry.peer == entry.peer,
                        AuditEntry.action == entry.action, AuditEntry.result == entry.result,
                        AuditEntry.at == entry.at,
                    ).order_by(col(AuditEntry.id).desc())
                ).first()  # fmt: skip
                if found is not None:
                    found.message, found.detail = entry.message, entry.detail
                    entry = found
                session.add(entry)
                session.flush()
            if plain:
                session.execute(insert(AUDIT), plain)
            session.commit()

    def audit_log(self, limit: int) -> list[AuditEntry]:
        with self._session() as session:
            query = select(AuditEntry).order_by(col(AuditEntry.id).desc()).limit(limit)
            return list(session.exec(query))


def aggregated(entry: AuditEntry) -> bool:
    """Refused anonymous attempts: counted per peer per minute, not stored one by one."""
    return entry.identity == "anonymous" and entry.result not in ("OK", "STARTED")


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def aware(moment: datetime) -> datetime:
    value = as_utc(moment)
    assert value is not None
    return value
