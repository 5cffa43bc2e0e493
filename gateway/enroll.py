"""The gateway's credential: a join token of role gateway traded for a certificate at the
first start, kept in STATE_DIR/tls (like the agent's) and renewed at 2/3 of its life."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import grpc
from cryptography.x509.oid import NameOID

from agent.credentials import AgentTls, NotEnrolled
from agent.join import remember_hub, remembered_hub
from gpufleet.channel import ChannelSettings
from gpufleet.enroll import EnrollError, join
from gpufleet.tls import TLS_OPTIONS
from gpufleet.v1 import trust_pb2

TOKEN_ENV = "GPUFLEET_JOIN_TOKEN"
HUB_ENV = "GPUFLEET_HUB"
DEFAULT_HUB = "localhost:7443"


class GatewayTls(AgentTls):
    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / "tls"
        self.ca, self.key, self.cert = (
            self.dir / n for n in ("ca.crt", "gateway.key", "gateway.crt")
        )

    def gateway_name(self) -> str:
        """The name the hub certified (CN gateway/NAME)."""
        names = self.certificate().subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        kind, _, name = str(names[0].value if names else "").partition("/")
        if kind != "gateway" or not name:
            raise NotEnrolled(f"{self.cert} is not a gateway certificate: remove {self.dir}")
        return name

    def open_channel(self, hub: str) -> grpc.aio.Channel:
        options = [*ChannelSettings().client_options(), *TLS_OPTIONS]
        return grpc.aio.secure_channel(hub, self.credentials(), options=options)


def resolve_hub(given: str | None, state_dir: Path, environ: Mapping[str, str]) -> str:
    """--hub, else the hub this state dir joined, else $GPUFLEET_HUB, else localhost:7443."""
    return given or remembered_hub(state_dir) or environ.get(HUB_ENV) or DEFAULT_HUB


def enroll(tls: GatewayTls, state_dir: Path, hub: str, token: str, name: str,
           port: int | None) -> None:  # fmt: skip
    """Join with a gateway token; EnrollError (one line) for anything that goes wrong."""
    enrolled = join(hub, token, name, port)
    if enrolled.role != trust_pb2.ROLE_GATEWAY:
        role = trust_pb2.Role.Name(enrolled.role).removeprefix("ROLE_").lower()  # type: ignore[arg-type]
        raise EnrollError(
            f"the join token is for role {role}, not gateway: create one with `hubctl tokens "
            f"create --role gateway --name {name}`"
        )
    try:
        tls.save(enrolled)
    except OSError as exc:
        raise EnrollError(
            f"cannot write {tls.dir}: {exc.strerror}: choose a writable --state-dir"
        ) from None
    remember_hub(state_dir, hub)
