"""hubctl commands for trust: join tokens, node removal, operator credentials, audit, login."""

from __future__ import annotations

import re
import sys
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.output import (
    CliError,
    JsonOption,
    console,
    emit_json,
    group_json,
    hub_address,
    plural,
)

if TYPE_CHECKING:
    from google.protobuf.message import Message
    from rich.table import Table

    from cli.client import HubClient
    from gpufleet.v1 import trust_pb2 as pb

TtlOption = Annotated[str, typer.Option("--ttl", help="How long the token is valid: 30m, 1h, 2d.")]
DURATION = re.compile(r"^(\d+)([smhd])$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
GATEWAY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")  # the hub's rule

tokens_app = typer.Typer(help="One-time join tokens for new nodes and gateways.")
credentials_app = typer.Typer(help="Operator credentials (client certificates with a role).")


@cache
def roles() -> dict[str, pb.Role]:
    from gpufleet.v1 import trust_pb2 as pb

    return {"agent": pb.ROLE_AGENT, "viewer": pb.ROLE_VIEWER, "operator": pb.ROLE_OPERATOR,
            "admin": pb.ROLE_ADMIN, "gateway": pb.ROLE_GATEWAY}  # fmt: skip


def role_name(value: int) -> str:
    return next((name for name, role in roles().items() if role == value), "?")


def seconds(text: str) -> int:
    match = DURATION.match(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise CliError(f"invalid --ttl {text!r}: a duration such as 30m, 1h or 2d", exit_code=2)
    return int(match.group(1)) * UNITS[match.group(2)]


def short(text: str, most: int) -> str:
    """A table cell of at most `most` characters; a cut one ends with '...'."""
    return text if len(text) <= most else text[: most - 3] + "..."


def parse_labels(text: str) -> dict[str, str]:
    labels = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"invalid --labels item {item!r}: expected KEY=VALUE", exit_code=2)
        labels[key] = value
    return labels


def connect(ctx: typer.Context) -> tuple[HubClient, Any]:
    """The hub client and a Trust stub over its channel."""
    from cli import client
    from gpufleet.v1 import trust_pb2_grpc

    hub = client.connect(ctx)
    return hub, trust_pb2_grpc.TrustStub(hub.channel)


def times(message: Message, *names: str) -> dict[str, str | None]:
    from cli.convert import stamp

    return {name: stamp(message, name) for name in names}


def token_json(token: pb.JoinToken) -> dict[str, Any]:
    return {
        "id": token.id, "role": role_name(token.role), "name": token.name,
        "labels": dict(token.labels), "created_by": token.created_by, "used_by": token.used_by,
        **times(token, "created", "expires", "used"),
    }  # fmt: skip


def table(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    from rich.table import Table

    out = Table(title=title, title_justify="left", box=None, header_style="bold")
    for column in columns:
        out.add_column(column)
    for row in rows:
        out.add_row(*row)
    return out


def create_token(
    ctx: typer.Context, role: str, ttl: str, labels: str, name: str, as_json: bool
) -> pb.CreateTokenResponse:
    from gpufleet.v1 import trust_pb2 as pb

    request = pb.CreateTokenRequest(
        role=roles()[role], ttl_seconds=seconds(ttl), labels=parse_labels(labels), name=name
    )
    client, trust = connect(ctx)
    reply: pb.CreateTokenResponse = client.call(trust.CreateToken, request)
    if as_json:
        emit_json({"token": reply.token, **token_json(reply.info)})
    return reply


def token_role(role: str, name: str, labels: str) -> str:
    """--role, --name and --labels of `tokens create` checked before any call (exit 2)."""
    role = role.strip().lower()
    if role in ("viewer", "operator", "admin"):
        raise CliError(f"--role {role} is an operator's: hubctl credentials create --name NAME "
                       f"--role {role}", exit_code=2)  # fmt: skip
    if role not in ("agent", "gateway"):
        raise CliError(f"invalid --role {role[:32]!r}: agent (a node) or gateway", exit_code=2)
    if role == "agent" and name:
        raise CliError("--name is for gateway tokens; a node names itself at join", exit_code=2)
    if role == "gateway" and labels:
        raise CliError("--labels are for node tokens", exit_code=2)
    if role == "gateway" and not GATEWAY_NAME.fullmatch(name):
        shown = f"{name[:64]!r}" if name else "none"
        raise CliError(
            f"gateway tokens need --name (1 to 63 letters, digits, . _ -: the gateway enrolls "
            f"as gateway/NAME), got {shown}", exit_code=2
        )  # fmt: skip
    return role


@tokens_app.command("create")
def tokens_create(
    ctx: typer.Context,
    ttl: TtlOption = "1h",
    labels: Annotated[str, typer.Option(help="Labels the node gets: role=chat,zone=a")] = "",
    role: Annotated[
        str, typer.Option(help="agent (a new node) or gateway (a gpufleet-gateway).")
    ] = "agent",
    name: Annotated[str, typer.Option(help="A gateway's name: it enrolls as gateway/NAME.")] = "",
    as_json: JsonOption = False,
) -> None:
    """Print a single-use token that enrolls one new node, or with --role gateway --name N one
    gateway."""
    role = token_role(role, name, labels)
    reply = create_token(ctx, role, ttl, labels, name, as_json)
    if as_json:
        return
    print(reply.token)
    expires = times(reply.info, "expires")["expires"]
    if role == "gateway":
        print(
            f"# single use, expires {expires}; for gateway/{name} (in its environment, not\n"
            f"# its command line, so that it never shows in ps):\n"
            f"#   GPUFLEET_JOIN_TOKEN={reply.token} gpufleet-gateway --hub {hub_address(ctx)} "
            f"--name {name}",
            file=sys.stderr,
        )
        return
    print(
        f"# single use, expires {expires}; on the new host:\n"
        f"#   gpufleet-agent join --hub {hub_address(ctx)} --token {reply.token}",
        file=sys.stderr,
    )


@tokens_app.callback(invoke_without_command=True)
def tokens(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Join and login tokens (`hubctl tokens` alone lists them, as `tokens list` does)."""
    group_json(ctx, as_json)
    if ctx.invoked_subcommand is None:
        tokens_list(ctx, as_json)


@tokens_app.command("list")
def tokens_list(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Tokens: who made them, when they expire, who used them."""
    from gpufleet.v1 import trust_pb2 as pb

    client, trust = connect(ctx)
    found = [token_json(t) for t in client.call(trust.ListTokens, pb.ListTokensRequest()).tokens]
    if as_json:
        emit_json(found)
        return
    rows = [
        [t["id"], t["role"], t["name"] or ",".join(f"{k}={v}" for k, v in t["labels"].items()),
         t["created_by"], t["expires"] or "", t["used_by"] or "-"]
        for t in found
    ]  # fmt: skip
    console().print(table("Join tokens", ["ID", "ROLE", "FOR", "BY", "EXPIRES", "USED BY"], rows))


def nodes_remove(ctx: typer.Context, name: str, as_json: JsonOption = False) -> None:
    """Forget a node and revoke its certificate; its agent is disconnected."""
    from gpufleet.v1 import trust_pb2 as pb

    client, trust = connect(ctx)
    reply = client.call(trust.RemoveNode, pb.RemoveNodeRequest(name=name))
    if as_json:
        emit_json({"name": name, "revoked_certificates": reply.revoked_certificates,
                   "was_connected": reply.was_connected})  # fmt: skip
        return
    link = "; its agent was disconnected" if reply.was_connected else ""
    revoked = plural(reply.revoked_certificates, "certificate")
    print(f"removed node {name}: {revoked} revoked{link}")


@credentials_app.callback(invoke_without_command=True)
def credentials_list(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Every certificate the hub issued, valid or revoked."""
    group_json(ctx, as_json)
    if ctx.invoked_subcommand is not None:
        return
    from gpufleet.v1 import trust_pb2 as pb

    client, trust = connect(ctx)
    reply = client.call(trust.ListCredentials, pb.ListCredentialsRequest())
    found = [
        {"serial": c.serial, "identity": c.identity, "role": role_name(c.role),
         "revoked_by": c.revoked_by, **times(c, "issued", "not_after", "revoked")}
        for c in reply.credentials
    ]  # fmt: skip
    if as_json:
        emit_json(found)
        return
    rows = [
        [c["identity"], c["role"], c["serial"][:12], c["not_after"] or "",
         f"revoked by {c['revoked_by']}" if c["revoked"] else "valid"]
        for c in found
    ]  # fmt: skip
    console().print(table("Credentials", ["IDENTITY", "ROLE", "SERIAL", "UNTIL", "STATE"], rows))


@credentials_app.command("create")
def credentials_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="Who the credential is for, e.g. alice.")],
    role: Annotated[str, typer.Option(help="viewer, operator or admin.")] = "viewer",
    ttl: TtlOption = "1h",
    as_json: JsonOption = False,
) -> None:
    """A single-use login token for an operator; they run `hubctl login` with it."""
    if role not in ("viewer", "operator", "admin"):
        raise CliError(f"invalid --role {role!r}: viewer, operator or admin", exit_code=2)
    reply = create_token(ctx, role, ttl, "", name, as_json)
    if not as_json:
        print(reply.token)
        print(f"# for {name} ({role}): hubctl login --hub {hub_address(ctx)} --token TOKEN",
              file=sys.stderr)  # fmt: skip


@credentials_app.command("revoke")
def credentials_revoke(ctx: typer.Context, identity: str) -> None:
    """Revoke every certificate of IDENTITY (e.g. user/alice)."""
    from gpufleet.v1 import trust_pb2 as pb

    client, trust = connect(ctx)
    reply = client.call(trust.RevokeCredential, pb.RevokeCredentialRequest(identity=identity))
    print(f"revoked {plural(reply.revoked_certificates, 'certificate')} of {identity}")


def login(
    ctx: typer.Context,
    token: Annotated[str, typer.Option(help="The token from `hubctl credentials create`.")],
    enroll_port: Annotated[
        int | None, typer.Option(help="The hub's enrollment port (default: its port + 1).")
    ] = None,
) -> None:
    """Trade a login token for a credential, kept in hubctl's config file:
    hubctl login --hub HOST:PORT --token T."""
    from cli import credentials
    from gpufleet.enroll import EnrollError, join
    from gpufleet.tls import write_private, write_public

    hub = hub_address(ctx)
    try:
        enrolled = join(hub, token, "", enroll_port)
    except EnrollError as exc:
        raise CliError(str(exc), exit_code=2) from None
    config = credentials.config_path()
    key = re.sub(r"[^\w.-]", "_", credentials.same_hub(hub))
    folder = config.with_name(f"{config.stem}.d") / key
    write_private(folder / "key.pem", enrolled.key_pem)
    write_public(folder / "cert.pem", enrolled.cert_pem)
    write_public(folder / "ca.pem", enrolled.ca_pem)
    entry = credentials.Profile(
        ca=str(folder / "ca.pem"), cert=str(folder / "cert.pem"), key=str(folder / "key.pem"),
        identity=enrolled.identity,
    )  # fmt: skip
    path = credentials.remember(hub, entry)
    role = role_name(enrolled.role)
    print(f"logged in to {hub} as {enrolled.identity} ({role}); saved in {path}")


def whoami(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """The identity and role hubctl presents to the hub."""
    from gpufleet.v1 import trust_pb2 as pb

    client, trust = connect(ctx)
    reply = client.call(trust.WhoAmI, pb.WhoAmIRequest())
    found = {"hub": hub_address(ctx), "identity": reply.identity,
             "role": role_name(reply.role), "insecure": reply.insecure,
             **times(reply, "not_after")}  # fmt: skip
    if as_json:
        emit_json(found)
    else:
        until = f", certificate valid until {found['not_after']}" if found["not_after"] else ""
        print(f"{found['identity']} ({found['role']}) at {found['hub']}{until}")


def audit(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="How many entries, newest first.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Who did what, when, with what result (admin only)."""
    from gpufleet.v1 import trust_pb2 as pb

    client, trust = connect(ctx)
    reply = client.call(trust.ListAudit, pb.ListAuditRequest(limit=max(1, limit)))
    found = [
        {"identity": e.identity, "peer": e.peer, "action": e.action, "detail": e.detail,
         "result": e.result, "message": e.message, **times(e, "at")}
        for e in reply.entries
    ]  # fmt: skip
    if as_json:
        emit_json(found)
        return
    rows = [[e["at"] or "", e["identity"], e["action"], e["result"], short(e["detail"], 80),
             short(e["message"], 60)] for e in found]  # fmt: skip
    console().print(
        table("Audit log", ["AT", "WHO", "ACTION", "RESULT", "DETAIL", "MESSAGE"], rows)
    )
