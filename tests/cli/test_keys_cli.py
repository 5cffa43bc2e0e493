"""hubctl keys and gateway tokens as real processes: bad input is refused before anything is
sent (one line, exit 2, even with no hub listening); against a real hub (mutual TLS) a key is
created with its secret shown once, listed, refused twice, revoked and its name used again;
a gateway token enrolls gateway/NAME, whose certificate may call the Gateway service and
nothing an operator may, while a viewer may not call the Gateway service."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

import grpc
import pytest

from gpufleet.enroll import Enrolled, EnrollError, join
from gpufleet.tls import TLS_OPTIONS
from gpufleet.v1 import gateway_pb2, gateway_pb2_grpc, hub_pb2, hub_pb2_grpc, trust_pb2
from hub.store import sqlite_url
from hub.store.db import make_engine
from hub.store.keys import KeyStore
from tests.cli.test_bad_input import hubctl, refused
from tests.cli.test_startup import NEVER, absent, loaded
from tests.support.procs import Cluster, free_port

NAME_RULE = "1 to 63 letters, digits, '.', '_' or '-'"

LOCAL = [
    (["keys", "create", "--name", ""], "invalid key name (empty)"),
    (["keys", "create", "--name", "my app"], f"invalid key name 'my app': {NAME_RULE}"),
    (["keys", "create", "--name", "-app"], "starting with a letter or digit"),
    (["keys", "create", "--name", "x" * 64], NAME_RULE),
    (["keys", "create", "--name", "app1", "--models", "Tiny"],
     "invalid model name 'Tiny' in --models"),
    (["keys", "create", "--name", "app1", "--models", "a,,b"], "invalid model name (empty)"),
    (["keys", "create", "--name", "app1", "--models", "a", "--models", "b_c"], "'b_c'"),
    (["keys", "create"], "Missing option '--name'"),
    (["keys", "revoke", "a/b"], "invalid key name 'a/b'"),
    (["keys", "revoke"], "Missing argument 'name'"),
    (["keys", "--json", "create", "--name", "a"], "--json goes after the subcommand"),
    (["keys", "--all", "revoke", "a"], "--all goes with the listing alone: hubctl keys --all"),
    (["tokens", "create", "--role", "gateway"], "gateway tokens need --name"),
    (["tokens", "create", "--role", "gateway", "--name", "gw 1"], "got 'gw 1'"),
    (["tokens", "create", "--role", "gateway", "--name", "gw1", "--labels", "a=b"],
     "--labels are for node tokens"),
    (["tokens", "create", "--name", "gw1"], "--name is for gateway tokens"),
    (["tokens", "create", "--role", "viewer", "--name", "x"],
     "hubctl credentials create --name NAME --role viewer"),
    (["tokens", "create", "--role", "root"], "invalid --role 'root': agent (a node) or gateway"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "fragment"), LOCAL, ids=[" ".join(a)[:48] for a, _ in LOCAL])
def test_bad_input_is_refused_before_anything_is_sent(argv: list[str], fragment: str) -> None:
    """No hub listens at the address: a command that tried to call one would say so."""
    result = hubctl("--hub", f"127.0.0.1:{free_port()}", "--insecure", *argv)
    refused(result, fragment)
    assert result.returncode == 2, result.stderr
    assert "cannot reach hub" not in result.stderr


def test_keys_are_listed_in_help_which_loads_no_grpc_rich_or_stubs() -> None:
    shown, modules = loaded("keys", "--help")
    assert shown.returncode == 0, shown.stderr
    assert absent(modules, *NEVER, "grpc", "rich", "gpufleet.v1", "cli.keys_view") == []
    for command in ("create", "revoke"):
        assert f"  {command} " in shown.stdout, shown.stdout
    assert "  keys " in hubctl("--help").stdout
    tokens = hubctl("tokens", "create", "--help")
    assert "gateway" in tokens.stdout and "--name" in tokens.stdout, tokens.stdout


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A real hub with mutual TLS (hubctl is its bootstrap admin) and no agent."""
    cluster = Cluster(tmp_path_factory.mktemp("keys"), None)
    cluster.start_hub()
    yield cluster
    cluster.close()


def test_a_key_is_created_listed_refused_twice_revoked_and_its_name_reused(
    fleet: Cluster,
) -> None:
    assert fleet.hubctl("keys").stdout == (
        "No valid API key: the gateway refuses every request. Create one: "
        "hubctl keys create --name app1\n"
    )
    assert fleet.json("keys") == [] and fleet.json("keys", "--all") == []

    made = fleet.hubctl("keys", "create", "--name", "app1", "--models", "tiny,qwen3-8b")
    secret = made.stdout.strip()
    assert secret.startswith("gpf-") and "\n" not in secret, made.stdout
    assert made.stderr == (
        "# key app1 (tiny, qwen3-8b): the secret is not shown again; clients send it as "
        "`Authorization: Bearer SECRET` (OpenAI clients: OPENAI_API_KEY=SECRET)\n"
    )
    second = fleet.json("keys", "create", "--name", "app2")
    assert set(second) == {"secret", "name", "prefix", "models", "created", "created_by",
                           "revoked"}  # fmt: skip
    assert second["prefix"] == second["secret"][:8] and second["secret"] != secret
    assert second["models"] == [] and second["created_by"] == "user/admin"
    assert second["revoked"] is None and second["created"].endswith("Z")

    # The hub's database holds the hash, never the secret.
    engine = make_engine(sqlite_url(fleet.tmp / "hub"))
    try:
        hashes = {k.name: k.sha256 for k in KeyStore(engine).valid()}
    finally:
        engine.dispose()
    assert hashes == {"app1": hashlib.sha256(secret.encode()).hexdigest(),
                      "app2": hashlib.sha256(second["secret"].encode()).hexdigest()}  # fmt: skip
    for stored in (fleet.tmp / "hub").glob("hub.db*"):  # the database, its WAL
        assert secret.encode() not in stored.read_bytes(), stored

    table = fleet.hubctl("keys").stdout.splitlines()
    assert table[0].split() == ["NAME", "PREFIX", "MODELS", "CREATED", "CREATED", "BY",
                                "REVOKED"]  # fmt: skip
    assert table[1].split()[:3] == ["app1", secret[:8], "tiny,qwen3-8b"], table
    assert table[2].split()[2] == "all" and table[2].split()[-2:] == ["user/admin", "-"], table

    taken = fleet.hubctl("keys", "create", "--name", "app1", check=False)
    refused(taken, "a key named 'app1' exists: revoke it first (hubctl keys revoke app1)")
    assert taken.returncode == 1

    gone = fleet.hubctl("keys", "revoke", "app1")
    assert gone.stdout == f"revoked key app1 ({secret[:8]}...)\n"
    again = fleet.hubctl("keys", "revoke", "app1", check=False)
    refused(again, "no valid key named 'app1': `hubctl keys` lists the valid keys")
    assert again.returncode == 1
    assert [k["name"] for k in fleet.json("keys")] == ["app2"]
    [revoked] = [k for k in fleet.json("keys", "--all") if k["revoked"]]
    assert revoked["name"] == "app1" and revoked["models"] == ["tiny", "qwen3-8b"]

    reused = fleet.json("keys", "create", "--name", "app1")
    assert reused["models"] == [] and reused["secret"] not in (secret, second["secret"])
    listed = fleet.json("keys", "--all")
    assert [(k["name"], k["revoked"] is None) for k in listed] == [
        ("app1", True), ("app1", False), ("app2", True)]  # fmt: skip
    shown = fleet.json("keys", "revoke", "app2")
    assert shown["name"] == "app2" and shown["revoked"] is not None and "secret" not in shown


def enrolled(fleet: Cluster, token: str) -> Enrolled:
    return join(fleet.address, token, "", int(fleet.enroll.rpartition(":")[2]))


def channel(fleet: Cluster, who: Enrolled) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(who.ca_pem, who.key_pem, who.cert_pem)
    return grpc.secure_channel(fleet.address, credentials, options=TLS_OPTIONS)


def code_of(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    """The status a call ends with, and its details."""
    try:
        call()
    except grpc.RpcError as exc:
        assert isinstance(exc, grpc.Call)
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def test_a_gateway_token_enrolls_gateway_name_with_the_gateway_role(fleet: Cluster) -> None:
    made = fleet.hubctl("tokens", "create", "--role", "gateway", "--name", "gw1")
    token = made.stdout.strip()
    hint = made.stderr.strip().splitlines()
    assert hint[0].startswith("# single use, expires ") and "for gateway/gw1" in hint[0]
    assert hint[2] == (f"#   GPUFLEET_JOIN_TOKEN={token} gpufleet-gateway --hub {fleet.address} "
                       "--name gw1")  # fmt: skip
    [listed] = [t for t in fleet.json("tokens") if t["role"] == "gateway"]
    assert listed["name"] == "gw1" and listed["used_by"] == ""

    gateway = enrolled(fleet, token)
    assert gateway.identity == "gateway/gw1" and gateway.role == trust_pb2.ROLE_GATEWAY
    [credential] = [c for c in fleet.json("credentials") if c["identity"] == "gateway/gw1"]
    assert credential["role"] == "gateway" and credential["revoked"] is None
    assert [t["used_by"] for t in fleet.json("tokens") if t["role"] == "gateway"] == [
        "gateway/gw1"]  # fmt: skip

    with channel(fleet, gateway) as link:
        gateway_stub = gateway_pb2_grpc.GatewayStub(link)  # type: ignore[no-untyped-call]
        ok = code_of(lambda: gateway_stub.GpuStats(gateway_pb2.GpuStatsRequest(), timeout=10))
        assert ok == (grpc.StatusCode.OK, "")
        hub_stub = hub_pb2_grpc.HubStub(link)
        denied = code_of(lambda: hub_stub.ListNodes(hub_pb2.ListNodesRequest(), timeout=10))
        assert denied == (
            grpc.StatusCode.PERMISSION_DENIED,
            "gateway/gw1 has the gateway role; ListNodes needs the viewer role",
        )
        keys_stub = gateway_pb2_grpc.ApiKeysStub(link)  # type: ignore[no-untyped-call]
        listing = code_of(lambda: keys_stub.ListKeys(gateway_pb2.ListKeysRequest(), timeout=10))
        assert listing[0] == grpc.StatusCode.PERMISSION_DENIED

    # A second gateway of that name: refused with what to do, the token left unused.
    second = fleet.hubctl("tokens", "create", "--role", "gateway", "--name", "gw1").stdout
    with pytest.raises(EnrollError) as caught:
        enrolled(fleet, second.strip())
    assert (
        "gateway/gw1 is already enrolled; revoke it first (hubctl credentials revoke "
        "gateway/gw1) if this gateway replaces it" in str(caught.value)
    )
    revoked = fleet.hubctl("credentials", "revoke", "gateway/gw1")
    assert revoked.stdout == "revoked 1 certificate of gateway/gw1\n"
    replacement = enrolled(fleet, second.strip())  # the token was not used up
    assert replacement.identity == "gateway/gw1"

    refused_on_hub = fleet.hubctl("tokens", "create", "--role", "gateway", "--name", "gw1",
                                  "--ttl", "30d", check=False)  # fmt: skip
    refused(refused_on_hub, "is longer than the 7 days a token may live")
    assert refused_on_hub.returncode == 1


def test_a_viewer_lists_keys_but_may_not_call_the_gateway_service(fleet: Cluster) -> None:
    viewer = enrolled(fleet, fleet.create_token(trust_pb2.ROLE_VIEWER, name="vera"))
    assert viewer.identity == "user/vera"
    with channel(fleet, viewer) as link:
        stub = gateway_pb2_grpc.GatewayStub(link)  # type: ignore[no-untyped-call]
        routes = stub.WatchRoutes(gateway_pb2.WatchRoutesRequest(gateway="x"), timeout=10)
        code, details = code_of(lambda: next(routes))
        assert (code, details) == (grpc.StatusCode.PERMISSION_DENIED,
                                   "user/vera has the viewer role; WatchRoutes needs an "
                                   "enrolled gateway")  # fmt: skip
        keys = gateway_pb2_grpc.ApiKeysStub(link)  # type: ignore[no-untyped-call]
        assert code_of(lambda: keys.ListKeys(gateway_pb2.ListKeysRequest(), timeout=10))[0] == (
            grpc.StatusCode.OK
        )
        create = code_of(lambda: keys.CreateKey(gateway_pb2.CreateKeyRequest(name="v"),
                                                timeout=10))  # fmt: skip
        assert create == (
            grpc.StatusCode.PERMISSION_DENIED,
            "user/vera has the viewer role; CreateKey needs the admin role",
        )
