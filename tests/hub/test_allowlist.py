"""The hub's in-memory allowlist: loaded at start from the valid credentials as plain rows,
it names each caller by its certificate; a revoked or expired one is refused in one line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from gpufleet.tls import make_csr, new_key
from hub.store import migrate
from hub.store.db import make_engine, sqlite_url
from hub.store.trust import Credential, TrustStore
from hub.trust.callers import Authenticator, Refused
from hub.trust.pki import Authority
from hub.trust.roles import Role

NOW = datetime(2026, 12, 1, 7, 30, tzinfo=UTC)


def test_loaded_credentials_name_their_callers(tmp_path: Path) -> None:
    authority = Authority.load_or_create(tmp_path / "pki", NOW)
    engine = make_engine(sqlite_url(tmp_path))
    migrate(engine)
    store = TrustStore(engine)
    pems = {}
    for name, life in (("good", 30), ("gone", 30), ("old", 1)):
        issued = authority.issue(make_csr(new_key()), f"node/{name}", "agent",
                                 timedelta(days=life), NOW - timedelta(days=2))  # fmt: skip
        store.add_credential(Credential(
            serial=format(issued.serial, "x"), identity=f"node/{name}", role="agent",
            labels={"zone": "a"}, issued=NOW, not_after=issued.not_after,
        ))  # fmt: skip
        pems[name] = issued.pem
    store.revoke("node/gone", "user/ops", NOW)
    auth = Authenticator(insecure=False, clock=lambda: NOW)
    loaded = store.valid_credentials(NOW)
    auth.load(loaded)
    engine.dispose()
    assert [a.identity for a in loaded] == ["node/good"]  # not revoked, not expired
    caller = auth.identify({"x509_pem_cert": [pems["good"]]})
    assert (caller.identity, caller.role, dict(caller.labels)) == ("node/good", Role.AGENT,
                                                                  {"zone": "a"})  # fmt: skip
    assert caller.not_after is not None and caller.not_after.tzinfo is not None
    for name in ("gone", "old"):
        with pytest.raises(Refused) as refused:
            auth.identify({"x509_pem_cert": [pems[name]]})
        assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
        assert "enroll again" in str(refused.value)
