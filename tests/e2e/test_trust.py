"""Trust end to end: enrollment with join tokens, mutual TLS, revocation, roles, audit."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml
from cryptography import x509

from gpufleet.channel import PROTOCOL_VERSION
from gpufleet.tls import TLS_OPTIONS
from gpufleet.v1 import agent_link_pb2 as link_pb
from gpufleet.v1 import agent_link_pb2_grpc, trust_pb2, trust_pb2_grpc
from tests.support.procs import REPO, Cluster, wait_until

SQLITE = pytest.mark.parametrize("db_url", [None], ids=["sqlite"])


def join(cluster: Cluster, token: str, name: str, state: Path) -> subprocess.CompletedProcess[str]:
    port = cluster.enroll.rpartition(":")[2]
    argv = ["join", "--hub", cluster.address, "--token", token, "--name", name]
    return subprocess.run(
        [sys.executable, "-m", "agent", *argv, "--state-dir", str(state), "--enroll-port", port],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr.strip().splitlines()[-1]


def hubctl_as(config: Path, cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", "--hub", cluster.address, *args],
        capture_output=True, text=True, timeout=60, cwd=REPO,
        env={**os.environ, "GPUFLEET_CONFIG": str(config)},
    )  # fmt: skip


def login(cluster: Cluster, tmp: Path, name: str, role: str) -> Path:
    """An operator's own hubctl config, logged in with a token the admin created."""
    token = cluster.hubctl("credentials", "create", "--name", name, "--role", role).stdout
    config = tmp / f"{name}.yaml"
    port = cluster.enroll.rpartition(":")[2]
    result = hubctl_as(config, cluster, "login", "--token", token.strip(), "--enroll-port", port)
    assert result.returncode == 0, result.stderr
    assert f"as user/{name} ({role})" in result.stdout
    return config


def agent_stream(state: Path, address: str, hello_name: str) -> grpc.StatusCode:
    """Open AgentLink.Connect with the certificate in `state` and say hello as `hello_name`."""
    tls = state / "tls"
    credentials = grpc.ssl_channel_credentials(
        *((tls / name).read_bytes() for name in ("ca.crt", "agent.key", "agent.crt"))
    )
    hello = link_pb.AgentMessage(
        hello=link_pb.Hello(
            node_name=hello_name, agent_id="x", versions=link_pb.Versions(protocol=PROTOCOL_VERSION)
        )
    )
    with grpc.secure_channel(address, credentials, options=TLS_OPTIONS) as channel:
        stream = agent_link_pb2_grpc.AgentLinkStub(channel).Connect(iter([hello]), timeout=10)
        try:
            for reply in stream:
                if reply.HasField("welcome"):
                    return grpc.StatusCode.OK
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.UNKNOWN


@SQLITE
def test_enrollment_and_refused_tokens(cluster: Cluster, tmp_path: Path) -> None:
    made = cluster.json("tokens", "create", "--labels", "role=chat,zone=a", "--ttl", "10m")
    token = made["token"]
    joined = join(cluster, token, "gpu-c", tmp_path / "c")
    assert joined.returncode == 0, joined.stderr
    key = tmp_path / "c" / "tls" / "agent.key"
    assert key.stat().st_mode & 0o777 == 0o600

    agent = cluster.agent("gpu-c", "mi50x2.yaml", state="../c").start()
    cluster.wait_status({"gpu-c": "ready"})
    node = cluster.json("nodes", "show", "gpu-c")
    assert node["labels"] == {"role": "chat", "zone": "a"}  # the token's labels
    assert agent.running

    used = join(cluster, token, "gpu-d", tmp_path / "d")
    assert used.returncode == 2
    assert "join token" in last_line(used) and "already used by node/gpu-c" in last_line(used)

    short = cluster.create_token(ttl=1)
    time.sleep(1.5)
    expired = join(cluster, short, "gpu-d", tmp_path / "d")
    assert expired.returncode == 2 and "expired" in last_line(expired)

    prefix, token_id, secret, pin = cluster.create_token().split(".")
    forged = f"{prefix}.{token_id}.{'A' * len(secret)}.{pin}"
    refused = join(cluster, forged, "gpu-d", tmp_path / "d")
    assert refused.returncode == 2 and "invalid join token" in last_line(refused)

    wrong_hub = f"{prefix}.{token_id}.{secret}.{'0' * len(pin)}"
    refused = join(cluster, wrong_hub, "gpu-d", tmp_path / "d")
    assert "not the hub that issued this token" in last_line(refused)

    malformed = join(cluster, "letmein", "gpu-d", tmp_path / "d")
    assert malformed.returncode == 2 and "malformed join token" in last_line(malformed)
    assert not (tmp_path / "d" / "tls" / "agent.crt").exists()
    assert [t["used_by"] for t in cluster.json("tokens", "list")].count("node/gpu-c") == 1


def hubctl_plain(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """hubctl with `args` as given: no --hub put first."""
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], capture_output=True, text=True, timeout=60,
        cwd=REPO, env={**os.environ, "GPUFLEET_CONFIG": str(config)},
    )  # fmt: skip


@SQLITE
def test_the_login_hint_works_as_printed_and_loopback_names_share_it(
    cluster: Cluster, tmp_path: Path
) -> None:
    made = cluster.hubctl("credentials", "create", "--name", "lena", "--role", "viewer")
    hint = made.stderr.strip().splitlines()[-1]
    assert hint == f"# for lena (viewer): hubctl login --hub {cluster.address} --token TOKEN"
    argv = shlex.split(hint.partition(": ")[2].replace("TOKEN", made.stdout.strip()))
    config = tmp_path / "lena.yaml"
    port = cluster.enroll.rpartition(":")[2]  # this test hub's; a hub's own is its port + 1
    done = hubctl_plain(config, *argv[1:], "--enroll-port", port)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"logged in to {cluster.address} as user/lena (viewer)")

    # localhost is this machine too: the same hub, the same credential, --hub after the command.
    local = cluster.address.replace("127.0.0.1", "localhost")
    who = hubctl_plain(config, "whoami", "--json", "--hub", local)
    assert who.returncode == 0, who.stderr
    assert json.loads(who.stdout)["identity"] == "user/lena"
    assert list(yaml.safe_load(config.read_text())["hubs"]) == [cluster.address]
    cluster.hubctl("credentials", "revoke", "user/lena")  # to log in again under localhost
    again = cluster.hubctl("credentials", "create", "--name", "lena", "--role", "viewer")
    relogin = hubctl_plain(config, "login", "--hub", local, "--token", again.stdout.strip(),
                           "--enroll-port", port)  # fmt: skip
    assert relogin.returncode == 0, relogin.stderr
    assert list(yaml.safe_load(config.read_text())["hubs"]) == [cluster.address]


@SQLITE
def test_tokens_alone_lists_them_and_the_join_hint_works(cluster: Cluster, tmp_path: Path) -> None:
    made = cluster.hubctl("tokens", "create", "--labels", "role=chat")
    hint = made.stderr.strip().splitlines()[-1]
    assert hint == f"#   gpufleet-agent join --hub {cluster.address} --token {made.stdout.strip()}"
    argv = shlex.split(hint.removeprefix("#"))
    assert argv[0] == "gpufleet-agent"
    port = cluster.enroll.rpartition(":")[2]
    extra = ["--name", "gpu-h", "--state-dir", str(tmp_path / "h"), "--enroll-port", port]
    joined = subprocess.run([sys.executable, "-m", "agent", *argv[1:], *extra],
                            capture_output=True, text=True, timeout=60, cwd=REPO)  # fmt: skip
    assert joined.returncode == 0, joined.stderr
    listed = cluster.json("tokens")
    assert [t["used_by"] for t in listed] == ["node/gpu-h"]
    assert "node/gpu-h" in cluster.hubctl("tokens").stdout


@SQLITE
def test_identity_comes_from_the_certificate(cluster: Cluster) -> None:
    cluster.agent("gpu-a", "a5500-a400.yaml").start()
    cluster.agent("gpu-b", "mi50x2.yaml").start()
    cluster.wait_status({"gpu-a": "ready", "gpu-b": "ready"})
    state_a = cluster.tmp / "agents" / "gpu-a"

    assert agent_stream(state_a, cluster.address, "gpu-b") == grpc.StatusCode.PERMISSION_DENIED
    assert cluster.statuses()["gpu-b"] == "ready"  # the real gpu-b is untouched

    # No client certificate: the TLS handshake of the main port fails before any call.
    ca = grpc.ssl_channel_credentials((cluster.pki / "ca.crt").read_bytes())
    with grpc.secure_channel(cluster.address, ca, options=TLS_OPTIONS) as channel:
        stream = agent_link_pb2_grpc.AgentLinkStub(channel).Connect(iter([]), timeout=5)
        with pytest.raises(grpc.RpcError) as refused:
            list(stream)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

    audit = cluster.json("audit", "--limit", "200")
    denied = [e for e in audit if e["result"] == "PERMISSION_DENIED"]
    assert denied and denied[0]["identity"] == "node/gpu-a"
    assert "cannot say hello as node 'gpu-b'" in denied[0]["message"]


@SQLITE
def test_removed_node_is_refused_across_a_hub_restart(cluster: Cluster) -> None:
    agent = cluster.agent("gpu-a", "a5500-a400.yaml").start()
    cluster.wait_status({"gpu-a": "ready"})
    removed = cluster.json("nodes", "remove", "gpu-a")
    assert removed == {"name": "gpu-a", "revoked_certificates": 1, "was_connected": True}
    wait_until(lambda: "gpu-a" not in cluster.statuses(), 10, "gpu-a to be gone")

    assert cluster.hub.terminate() == 0
    cluster.start_hub()
    state = cluster.tmp / "agents" / "gpu-a"
    assert agent_stream(state, cluster.address, "gpu-a") == grpc.StatusCode.UNAUTHENTICATED
    wait_until(lambda: "is revoked" in agent.log(), 20, "the agent to be told it is revoked")
    assert "gpu-a" not in cluster.statuses()
    assert agent.running  # it keeps retrying with backoff; an operator re-enrolls the host

    again = cluster.hubctl("nodes", "remove", "gpu-a", check=False)
    assert again.returncode == 1 and "no node named 'gpu-a'" in again.stderr


@SQLITE
def test_roles_viewer_operator_admin(cluster: Cluster, tmp_path: Path) -> None:
    cluster.agent("gpu-a", "a5500-a400.yaml").start()
    cluster.wait_status({"gpu-a": "ready"})
    viewer = login(cluster, tmp_path, "vera", "viewer")
    operator = login(cluster, tmp_path, "otto", "operator")

    listed = hubctl_as(viewer, cluster, "nodes", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout)[0]["name"] == "gpu-a"
    switch = ["switch", "big-chat", "--node", "gpu-a", "--check", "--detach", "--json"]
    refused = hubctl_as(viewer, cluster, *switch)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "hubctl: user/vera has the viewer role; Switch needs the operator role"
    ]

    started = hubctl_as(operator, cluster, *switch)
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout)["id"]
    tokens = hubctl_as(operator, cluster, "tokens", "create")
    assert tokens.returncode == 1
    assert "user/otto has the operator role; CreateToken needs the admin role" in tokens.stderr

    whoami = json.loads(hubctl_as(operator, cluster, "whoami", "--json").stdout)
    assert whoami["identity"] == "user/otto" and whoami["role"] == "operator"
    audit = cluster.json("audit", "--limit", "100")
    seen = {(e["identity"], e["action"], e["result"]) for e in audit}
    assert ("user/vera", "Hub/Switch", "PERMISSION_DENIED") in seen
    assert ("user/otto", "Hub/Switch", "OK") in seen
    assert ("user/otto", "Trust/CreateToken", "PERMISSION_DENIED") in seen
    # What each asked for, readable: not cut protobuf text.
    details = {e["detail"] for e in audit if e["action"] == "Hub/Switch"}
    assert details == {"big-chat nodes=gpu-a check"}

    revoked = cluster.hubctl("credentials", "revoke", "user/vera")
    assert "revoked 1 certificate of user/vera" in revoked.stdout
    after = hubctl_as(viewer, cluster, "nodes")
    assert after.returncode == 1 and "revoked" in after.stderr


@pytest.fixture
def short_lived(tmp_path: Path, db_url: str | None) -> Iterator[Cluster]:
    """Certificates of 9 s: agents renew at 2/3, every 6 s."""
    fleet = Cluster(tmp_path, db_url, hub_args=("--cert-days", str(9 / 86400)))
    fleet.start_hub()
    try:
        yield fleet
    finally:
        fleet.close()


def serial(state: Path) -> int:
    cert = x509.load_pem_x509_certificate((state / "tls" / "agent.crt").read_bytes())
    return cert.serial_number


@SQLITE
def test_agent_renews_its_certificate_over_the_link(short_lived: Cluster) -> None:
    cluster = short_lived
    agent = cluster.agent("gpu-a", "a5500-a400.yaml").start()
    cluster.wait_status({"gpu-a": "ready"})
    state = cluster.tmp / "agents" / "gpu-a"
    first = serial(state)
    wait_until(lambda: "certificate renewed" in agent.log(), 20, "a renewal")
    assert serial(state) != first
    # The first certificate has expired by now; the renewed one carries the agent on.
    time.sleep(4)
    assert cluster.hub.terminate() == 0
    cluster.start_hub()
    cluster.wait_status({"gpu-a": "ready"})
    renewals = [e for e in cluster.json("audit") if e["action"] == "Trust/Renew"]
    assert renewals and all(e["identity"] == "node/gpu-a" for e in renewals)


def test_insecure_hub_needs_the_flag_on_both_sides(tmp_path: Path) -> None:
    fleet = Cluster(tmp_path, None, secure=False)
    fleet.start_hub()
    try:
        fleet.agent("dev", "mi50x2.yaml").start()
        fleet.wait_status({"dev": "ready"})
        who = fleet.json("whoami")
        assert who["insecure"] is True
        refused = subprocess.run(
            [sys.executable, "-m", "agent", "--hub", fleet.address, "--state-dir",
             str(tmp_path / "plain")],
            capture_output=True, text=True, timeout=30, cwd=REPO,
        )  # fmt: skip
        assert refused.returncode == 2 and "this host is not enrolled" in last_line(refused)
    finally:
        fleet.close()


@SQLITE
def test_an_enrollment_flood_is_limited_per_peer_and_audited_in_few_rows(
    cluster: Cluster, tmp_path: Path
) -> None:
    prefix, token_id, secret, pin = cluster.create_token().split(".")
    forged = f"{prefix}.{token_id}.{'A' * len(secret)}.{pin}"
    ca = grpc.ssl_channel_credentials((cluster.pki / "ca.crt").read_bytes())
    codes, last = [], ""
    with grpc.secure_channel(cluster.enroll, ca, options=TLS_OPTIONS) as channel:
        stub = trust_pb2_grpc.EnrollmentStub(channel)
        for _ in range(60):
            try:
                stub.Join(trust_pb2.JoinRequest(token=forged, name="x", csr_pem=""), timeout=10)
            except grpc.RpcError as exc:
                codes.append(exc.code())
                last = str(exc.details())
    unauthenticated = grpc.StatusCode.UNAUTHENTICATED
    assert codes[:10] == [unauthenticated] * 10  # a burst of 10 refusals, then limited
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) >= 45, codes
    assert last.startswith("too many refused enrollment attempts from 127.0.0.1: retry in ")

    def refused_rows() -> list[dict[str, str]] | None:
        rows = [e for e in cluster.json("audit", "--limit", "1000") if e["identity"] == "anonymous"]
        counts = [int(e["message"].split(" refused attempt")[0]) for e in rows]
        return rows if sum(counts) == 60 else None

    rows = wait_until(refused_rows, 10, "60 refused attempts counted in the audit log")
    assert len(rows) <= 4, rows  # per peer, result and minute: not one row per attempt
    assert all(e["peer"] == "127.0.0.1" and e["action"] == "Enrollment/Join" for e in rows)
    assert cluster.hub.log().count("audit: anonymous Enrollment/Join") <= 4

    time.sleep(2.5)  # the peer's bucket refills: a good token joins again
    joined = join(cluster, cluster.create_token(), "gpu-late", tmp_path / "late")
    assert joined.returncode == 0, joined.stderr
