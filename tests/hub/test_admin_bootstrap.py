"""hubctl's admin credential on the hub's host: made once, kept while fresh, renewed near
its end, never brought back once revoked, and taken from the file for a new database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from hub.store import migrate
from hub.store.db import make_engine, sqlite_url
from hub.store.trust import TrustStore
from hub.trust.pki import Authority, load_cert
from hub.trust.setup import ADMIN_IDENTITY, ADMIN_LIFETIME, RENEW_BEFORE, bootstrap_admin

NOW = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)


def serial(pki: Path) -> str:
    return format(load_cert(pki / "admin.crt").serial_number, "x")


def store_at(path: Path) -> TrustStore:
    path.mkdir()
    engine = make_engine(sqlite_url(path))
    migrate(engine)
    return TrustStore(engine)


def test_made_once_kept_renewed_and_never_brought_back(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    authority = Authority.load_or_create(pki, NOW)
    store = store_at(tmp_path / "db")
    bootstrap_admin(pki, authority, store, NOW)
    first = serial(pki)
    assert [(c.serial, c.identity) for c in store.credentials()] == [(first, ADMIN_IDENTITY)]
    bootstrap_admin(pki, authority, store, NOW + timedelta(days=1))  # fresh: kept
    assert serial(pki) == first and len(store.credentials()) == 1
    late = NOW + ADMIN_LIFETIME - RENEW_BEFORE + timedelta(days=1)
    bootstrap_admin(pki, authority, store, late)  # near its end: a new one
    renewed = serial(pki)
    assert renewed != first and len(store.credentials()) == 2
    store.revoke(ADMIN_IDENTITY, "user/ops", late)
    bootstrap_admin(pki, authority, store, late + timedelta(days=1))  # revoked stays revoked
    assert serial(pki) == renewed and len(store.credentials()) == 2
    other = store_at(tmp_path / "other")  # a new database under the same CA
    bootstrap_admin(pki, authority, other, late)
    assert [c.serial for c in other.credentials()] == [renewed]
    store.engine.dispose()
    other.engine.dispose()
