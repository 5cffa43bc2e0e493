"""API keys: `Authorization: Bearer SECRET`, checked by the secret's sha256 against the
table's keys. A key with models may use only those."""

from __future__ import annotations

import hashlib

from gateway.errors import GatewayError
from gateway.table import KeyHash, Table

NO_KEY = "missing API key: send `Authorization: Bearer SECRET` with a key from `hubctl keys create`"


def authenticate(table: Table, header: str | None) -> KeyHash:
    scheme, _, secret = (header or "").partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise GatewayError(401, NO_KEY, "missing_api_key")
    key = table.key(hashlib.sha256(secret.encode()).hexdigest())
    if key is None:
        raise GatewayError(
            401, "invalid API key: it is unknown or revoked (see `hubctl keys list`)",
            "invalid_api_key",
        )  # fmt: skip
    return key


def authorize(key: KeyHash | None, model: str) -> None:
    """`key` None: the gateway runs --open."""
    if key is not None and not key.allows(model):
        raise GatewayError(
            403, f"API key {key.name!r} may not use model {model!r} (it may use: "
            f"{', '.join(sorted(key.models))})", "model_not_allowed", param="model",
        )  # fmt: skip
