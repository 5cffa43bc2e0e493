"""API keys of the gateway (issue 16): the store on a real database (SQLite, and PostgreSQL
where the tests have it) and the ApiKeys service over gRPC (a grpc.aio server with the hub's
own interceptor), plus which roles may call the Gateway and ApiKeys services."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy.exc
from sqlalchemy import inspect

from gpufleet.v1 import gateway_pb2 as pb
from gpufleet.v1 import gateway_pb2_grpc
from hub import services
from hub.keys.service import ApiKeysService, Refusal, check_models, check_name, digest
from hub.store import Database, migrate, sqlite_url
from hub.store.db import make_engine
from hub.store.keys import ApiKeyRow, KeyHash, KeyStore, KeyTaken
from hub.trust import callers, roles
from hub.trust.auth import AuthInterceptor
from hub.trust.callers import Authenticator, Caller
from hub.trust.roles import Role

T0 = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)


@pytest.fixture
def keys(tmp_path: Path, db_url: str | None) -> Iterator[KeyStore]:
    engine = make_engine(db_url or sqlite_url(tmp_path))
    migrate(engine)
    yield KeyStore(engine)
    engine.dispose()


def made(store: KeyStore, name: str, secret: str, models: tuple[str, ...] = (),
         at: datetime = T0) -> None:  # fmt: skip
    store.create(name, secret[:8], digest(secret), models, at, "user/admin")


# -- the store ---------------------------------------------------------------------------------


def test_the_migration_builds_the_table(keys: KeyStore) -> None:
    columns = {c["name"] for c in inspect(keys.engine).get_columns("api_key")}
    assert columns == {"id", "name", "prefix", "sha256", "models", "created", "created_by",
                       "revoked"}  # fmt: skip
    indexes = {i["name"]: i["unique"] for i in inspect(keys.engine).get_indexes("api_key")}
    assert indexes["ix_api_key_live_name"]


def test_create_list_revoke_and_reuse_a_revoked_name(keys: KeyStore) -> None:
    made(keys, "app1", "gpf-one", ("tiny", "qwen3-8b"))
    made(keys, "app2", "gpf-two")
    with pytest.raises(KeyTaken):
        made(keys, "app1", "gpf-three")
    assert [(k.name, k.models, k.created, k.revoked) for k in keys.all()] == [
        ("app1", ("tiny", "qwen3-8b"), T0, None), ("app2", (), T0, None),
    ]  # fmt: skip
    assert keys.valid() == [
        KeyHash("app1", hashlib.sha256(b"gpf-one").hexdigest(), ("tiny", "qwen3-8b")),
        KeyHash("app2", digest("gpf-two"), ()),
    ]  # fmt: skip

    later = T0 + timedelta(minutes=5)
    revoked = keys.revoke("app1", later)
    assert revoked is not None and revoked.revoked == later and revoked.prefix == "gpf-one"
    assert keys.revoke("app1", later) is None  # nothing valid of that name any more
    assert keys.revoke("nope", later) is None
    assert [k.name for k in keys.valid()] == ["app2"]  # a revoked key is left out
    assert [k.name for k in keys.all()] == ["app2"]

    made(keys, "app1", "gpf-again", at=later)  # a revoked name may be used again
    listed = [(k.name, k.prefix, k.revoked) for k in keys.all(revoked=True)]
    assert listed == [("app1", "gpf-agai", None), ("app1", "gpf-one", later),
                      ("app2", "gpf-two", None)]  # fmt: skip
    assert [k.sha256 for k in keys.valid()] == [digest("gpf-again"), digest("gpf-two")]
    with pytest.raises(KeyTaken):
        made(keys, "app1", "gpf-fourth")


def test_the_database_refuses_two_live_keys_of_one_name(keys: KeyStore) -> None:
    """The partial unique index holds even for a writer that skips the store's own check
    (another hub on the same database)."""
    from sqlmodel import Session

    made(keys, "app1", "gpf-one")
    with Session(keys.engine) as session, pytest.raises(sqlalchemy.exc.IntegrityError):
        session.add(ApiKeyRow(name="app1", prefix="gpf-x", sha256=digest("x"), models=[],
                              created=T0, created_by="user/admin"))  # fmt: skip
        session.commit()


# -- the checks ------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "fragment"), [
    ("", "a key needs a name: --name app1"),
    ("-app", "starting with a letter or digit"),
    ("app 1", "invalid key name 'app 1'"),
    ("a/b", "letters, digits, '.', '_' or '-'"),
    ("x" * 64, "1 to 63"),
])  # fmt: skip
def test_bad_key_names_are_refused(name: str, fragment: str) -> None:
    with pytest.raises(Refusal) as caught:
        check_name(name)
    assert fragment in str(caught.value)


def test_good_names_and_models_pass() -> None:
    assert check_name("app1") == "app1" and check_name("A.b_c-9") == "A.b_c-9"
    assert check_name("x" * 63) == "x" * 63
    assert check_models(["tiny", "qwen3-8b", "tiny"]) == ("tiny", "qwen3-8b")
    assert check_models([]) == ()


@pytest.mark.parametrize("model", ["Tiny", "", "a_b", "x" * 64, "-x", "qwen3.8b"])
def test_bad_model_names_are_refused(model: str) -> None:
    with pytest.raises(Refusal, match="in --models: a model's name") as caught:
        check_models(["tiny", model])
    assert "`hubctl models` lists them" in str(caught.value)


# -- the service over gRPC -------------------------------------------------------------------


@contextlib.asynccontextmanager
async def served(db: Database, changes: list[str]) -> AsyncIterator[Any]:
    """An ApiKeys stub to the service served by a grpc.aio server on loopback, behind the
    hub's own interceptor (insecure: the caller is `insecure`, an admin)."""
    audit: list[object] = []
    interceptor = AuthInterceptor(Authenticator(True, lambda: datetime.now(UTC)), audit.append)
    server = grpc.aio.server(interceptors=[interceptor])
    service = ApiKeysService(db, lambda: changes.append("changed"), clock=lambda: T0)
    gateway_pb2_grpc.add_ApiKeysServicer_to_server(service, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield gateway_pb2_grpc.ApiKeysStub(channel)  # type: ignore[no-untyped-call]
    finally:
        await server.stop(0)


async def refused(call: Any) -> grpc.aio.AioRpcError:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc
    raise AssertionError("the call succeeded")


def test_create_list_revoke_over_grpc(db: Database) -> None:
    changes: list[str] = []

    async def scenario() -> None:
        async with served(db, changes) as stub:
            made = await stub.CreateKey(pb.CreateKeyRequest(name="app1", models=["tiny"]))
            secret = made.secret
            assert secret.startswith("gpf-") and len(secret) == 4 + 43, secret
            assert made.key.prefix == secret[:8] and made.key.name == "app1"
            assert list(made.key.models) == ["tiny"] and made.key.created_by == "insecure"
            assert made.key.created.ToDatetime(UTC) == T0 and not made.key.HasField("revoked")
            assert changes == ["changed"]
            # The hub keeps the hash only: what a gateway compares a request's key with.
            stored = await db.call(KeyStore(db.engine).valid)
            assert stored == [KeyHash("app1", hashlib.sha256(secret.encode()).hexdigest(),
                                      ("tiny",))]  # fmt: skip
            other = await stub.CreateKey(pb.CreateKeyRequest(name="app2"))
            assert other.secret != secret and list(other.key.models) == []

            taken = await refused(stub.CreateKey(pb.CreateKeyRequest(name="app1")))
            assert taken.code() == grpc.StatusCode.ALREADY_EXISTS
            assert taken.details() == (
                "a key named 'app1' exists: revoke it first "
                "(hubctl keys revoke app1) or pick another name"
            )
            assert changes == ["changed"] * 2  # a refusal changes nothing

            gone = await stub.RevokeKey(pb.RevokeKeyRequest(name="app1"))
            assert gone.key.name == "app1" and gone.key.revoked.ToDatetime(UTC) == T0
            assert changes == ["changed"] * 3
            missing = await refused(stub.RevokeKey(pb.RevokeKeyRequest(name="app1")))
            assert missing.code() == grpc.StatusCode.NOT_FOUND
            assert (
                missing.details() == "no valid key named 'app1': `hubctl keys` lists the valid keys"
            )

            listed = await stub.ListKeys(pb.ListKeysRequest())
            assert [k.name for k in listed.keys] == ["app2"]
            again = await stub.CreateKey(pb.CreateKeyRequest(name="app1"))  # reused
            every = await stub.ListKeys(pb.ListKeysRequest(all=True))
            assert [(k.name, k.HasField("revoked")) for k in every.keys] == [
                ("app1", False), ("app1", True), ("app2", False)]  # fmt: skip
            assert every.keys[0].prefix == again.secret[:8]
            assert [k.name for k in await db.call(KeyStore(db.engine).valid)] == ["app1", "app2"]

    asyncio.run(scenario())


BAD = [
    (pb.CreateKeyRequest(name=""), "a key needs a name"),
    (pb.CreateKeyRequest(name="my key"), "invalid key name 'my key'"),
    (pb.CreateKeyRequest(name="app1", models=["tiny", "Big_Model"]),
     "invalid model name 'Big_Model' in --models"),
    (pb.CreateKeyRequest(name="app1", models=["m"] * 257), "a key names at most 256"),
]  # fmt: skip


@pytest.mark.parametrize(("request_", "fragment"), BAD, ids=[f for _, f in BAD])
def test_bad_requests_are_one_line_and_change_nothing(
    db: Database, request_: pb.CreateKeyRequest, fragment: str
) -> None:
    changes: list[str] = []

    async def scenario() -> None:
        async with served(db, changes) as stub:
            error = await refused(stub.CreateKey(request_))
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert fragment in (error.details() or "") and "\n" not in (error.details() or "")
            assert (await stub.ListKeys(pb.ListKeysRequest(all=True))).keys == []

    asyncio.run(scenario())
    assert changes == []


def test_created_by_is_the_callers_identity(db: Database) -> None:
    """The caller the interceptor admitted (here set as it would be)."""
    service = ApiKeysService(db)
    context: Any = None  # the happy path never reads it

    async def create() -> pb.CreateKeyResponse:
        callers.current.set(Caller("user/alice", Role.ADMIN))
        reply: pb.CreateKeyResponse = await service.CreateKey(
            pb.CreateKeyRequest(name="app1"), context
        )
        return reply

    assert asyncio.run(create()).key.created_by == "user/alice"
    [key] = KeyStore(db.engine).all()
    assert key.created_by == "user/alice" and key.created.tzinfo is not None


# -- roles -------------------------------------------------------------------------------------


def may(role: Role, method: str) -> bool:
    return roles.allowed(role, services.required(method))


def test_only_a_gateway_may_call_the_gateway_service() -> None:
    gateway = pb.DESCRIPTOR.services_by_name["Gateway"]
    for method in gateway.methods:
        name = f"/{gateway.full_name}/{method.name}"
        assert may(Role.GATEWAY, name), name
        for other in (Role.ANONYMOUS, Role.AGENT, Role.VIEWER, Role.OPERATOR, Role.ADMIN):
            assert not may(other, name), (other, name)
    assert not may(Role.GATEWAY, "/gpufleet.v1.Hub/ListNodes")
    assert not may(Role.GATEWAY, "/gpufleet.v1.AgentLink/Connect")
    assert not may(Role.GATEWAY, "/gpufleet.v1.ApiKeys/ListKeys")
    assert may(Role.GATEWAY, "/gpufleet.v1.Trust/Renew")  # any enrolled identity renews


def test_viewers_list_keys_and_admins_change_them() -> None:
    assert may(Role.VIEWER, "/gpufleet.v1.ApiKeys/ListKeys")
    for method in ("CreateKey", "RevokeKey"):
        assert not may(Role.OPERATOR, f"/gpufleet.v1.ApiKeys/{method}")
        assert may(Role.ADMIN, f"/gpufleet.v1.ApiKeys/{method}")
    assert Role.parse("gateway") == Role.GATEWAY and Role.GATEWAY.label == "gateway"
