"""The ApiKeys service (`hubctl keys`): create a key (its secret is answered this once), list,
revoke. Every change is told to `on_change`, so that gateways get a routing table without a
revoked key at once. The rows are in hub/store/keys.py."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NoReturn

import grpc

from gpufleet.v1 import gateway_pb2, gateway_pb2_grpc
from hub.keys.convert import key_to_proto
from hub.models.checks import LABEL
from hub.store.db import Database
from hub.store.keys import KeyStore, KeyTaken
from hub.trust import callers

Context = grpc.aio.ServicerContext[Any, Any]

KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
SECRET_PREFIX = "gpf-"
PREFIX_CHARS = 8  # "gpf-" and four characters of the secret
MOST_MODELS = 256
LISTED = "`hubctl keys` lists the valid keys"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    """What the hub keeps of a key, and what a gateway compares a request's key with."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Refusal(Exception):
    """A request that cannot be served as asked; the message says what to change."""


def check_name(name: str) -> str:
    if not name:
        raise Refusal("a key needs a name: --name app1 (letters, digits, '.', '_', '-')")
    if not KEY_NAME.match(name):
        raise Refusal(
            f"invalid key name {name[:64]!r}: 1 to 63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (e.g. app1)"
        )
    return name


def check_models(models: list[str]) -> tuple[str, ...]:
    """Each a model's name (a DNS label, as model definitions name them), duplicates once."""
    if len(models) > MOST_MODELS:
        raise Refusal(
            f"{len(models)} models: a key names at most {MOST_MODELS} (none: every model)"
        )
    for model in models:
        if not LABEL.match(model):
            raise Refusal(
                f"invalid model name {model[:64]!r} in --models: a model's name, 1 to 63 "
                "lowercase letters, digits or '-' (`hubctl models` lists them)"
            )
    return tuple(dict.fromkeys(models))


async def refuse(context: Context, status: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(status, message)
    raise AssertionError("abort raises")


class ApiKeysService(gateway_pb2_grpc.ApiKeysServicer):  # type: ignore[misc]
    def __init__(self, db: Database, on_change: Callable[[], None] = lambda: None,
                 clock: Callable[[], datetime] = _utcnow) -> None:  # fmt: skip
        self.db = db
        self.store = KeyStore(db.engine)
        self.on_change = on_change
        self.clock = clock

    async def CreateKey(self, request: gateway_pb2.CreateKeyRequest,
                        context: Context) -> gateway_pb2.CreateKeyResponse:  # fmt: skip
        try:
            name = check_name(request.name)
            models = check_models(list(request.models))
        except Refusal as exc:
            await refuse(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        secret = new_secret()
        who = callers.current.get().identity
        try:
            key = await self.db.call(self.store.create, name, secret[:PREFIX_CHARS],
                                     digest(secret), models, self.clock(), who)  # fmt: skip
        except KeyTaken:
            await refuse(
                context, grpc.StatusCode.ALREADY_EXISTS,
                f"a key named {name!r} exists: revoke it first (hubctl keys revoke {name}) or "
                "pick another name",
            )  # fmt: skip
        self.on_change()
        return gateway_pb2.CreateKeyResponse(key=key_to_proto(key), secret=secret)

    async def ListKeys(self, request: gateway_pb2.ListKeysRequest,
                       context: Context) -> gateway_pb2.ListKeysResponse:  # fmt: skip
        keys = await self.db.call(self.store.all, request.all)
        return gateway_pb2.ListKeysResponse(keys=[key_to_proto(key) for key in keys])

    async def RevokeKey(self, request: gateway_pb2.RevokeKeyRequest,
                        context: Context) -> gateway_pb2.RevokeKeyResponse:  # fmt: skip
        key = await self.db.call(self.store.revoke, request.name, self.clock())
        if key is None:
            await refuse(context, grpc.StatusCode.NOT_FOUND,
                         f"no valid key named {request.name[:64]!r}: {LISTED}")  # fmt: skip
        self.on_change()
        return gateway_pb2.RevokeKeyResponse(key=key_to_proto(key))
