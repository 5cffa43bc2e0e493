"""hubctl's config file: which hub by default, and the credential for each hub.

~/.config/gpufleet/hubctl.yaml (or $GPUFLEET_CONFIG), mode 0600, written by `hubctl login`
and `hubctl up`:

    default: hub.example:7443
    hubs:
      hub.example:7443: {ca: ..., cert: ..., key: ..., identity: user/alice}
      127.0.0.1:7443: {insecure: true}
"""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from cli.output import CliError

if TYPE_CHECKING:
    import grpc

DEFAULT_HUB = "127.0.0.1:7443"  # where `hubctl up` listens by default
LOOPBACK = ("localhost", "127.0.0.1", "::1", "ip6-localhost")
HEADER = "# hubctl's hubs and credentials; written by `hubctl login` and `hubctl up`.\n"
# gpufleet.tls.TLS_OPTIONS without the cryptography that module loads (tests/cli checks that
# they agree): every hubctl call needs it, and only login needs cryptography.
TLS_OPTIONS = [("grpc.ssl_target_name_override", "gpufleet-hub")]


def config_path() -> Path:
    if os.environ.get("GPUFLEET_CONFIG"):
        return Path(os.environ["GPUFLEET_CONFIG"])
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "gpufleet" / "hubctl.yaml"


@dataclass(frozen=True)
class Profile:
    ca: str = ""
    cert: str = ""
    key: str = ""
    identity: str = ""
    insecure: bool = False


def load() -> dict[str, Any]:
    path = config_path()
    if not path.exists():
        return {"hubs": {}}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise CliError(
            f"cannot read {path}: {str(exc).splitlines()[0]}: fix or remove it"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("hubs", {}), dict):
        raise CliError(f"{path} is not a hubctl config (expected keys default and hubs)")
    data.setdefault("hubs", {})
    return data


def default_hub() -> str:
    return str(load().get("default") or DEFAULT_HUB)


def same_hub(address: str) -> str:
    """The key a hub's credential is kept under: host names lower-cased, and this machine's
    names (localhost, 127.0.0.1, [::1]) one name, so `localhost:7443` and `127.0.0.1:7443`
    find the same credential. The address hubctl dials stays as given."""
    host, sep, port = address.strip().rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()):
        return address
    host = host.strip("[]").lower().rstrip(".")
    return f"127.0.0.1:{int(port)}" if host in LOOPBACK else f"{host}:{int(port)}"


def entry_for(hubs: dict[str, Any], hub: str) -> tuple[str, Any] | None:
    """The config's key and entry for `hub`: its own key first (files written before keys were
    normalised), else any key naming the same hub."""
    if hub in hubs:
        return hub, hubs[hub]
    key = same_hub(hub)
    return next(((k, v) for k, v in hubs.items() if same_hub(str(k)) == key), None)


def profile(hub: str) -> Profile:
    found = entry_for(load()["hubs"], hub)
    entry = None if found is None else found[1]
    if entry is None:
        if os.environ.get("GPUFLEET_INSECURE") == "1":
            return Profile(insecure=True)
        check_reachable(hub)  # no hub at all is the first thing to tell
        raise CliError(
            f"no credentials for hub {hub} in {config_path()}: `hubctl up` sets up a local hub; "
            f"for another, `hubctl login --hub {hub} --token T` with a token from its admin",
            exit_code=2,
        )
    try:
        return Profile(**entry)
    except TypeError:
        raise CliError(f"{config_path()}: the entry for {hub} has unknown keys") from None


def check_reachable(hub: str) -> None:
    from gpufleet.tls import split_address

    try:
        host, port = split_address(hub)
    except ValueError as exc:
        raise CliError(f"--hub {exc}: expected e.g. hub.example:7443", exit_code=2) from None
    try:
        socket.create_connection((host, port), timeout=2).close()
    except UnicodeError:  # IDNA cannot encode the host name
        raise CliError(
            f"--hub {hub[:80]!r} is not HOST:PORT: each part of a host name has 1 to 63 "
            "characters, e.g. hub.example:7443",
            exit_code=2,
        ) from None
    except OSError as exc:
        reason = "connection refused" if isinstance(exc, ConnectionRefusedError) else str(exc)
        raise CliError(
            f"cannot reach hub at {hub}: {reason} (is the hub running? start one with `hubctl up`)",
            exit_code=2,
        ) from None


def remember(hub: str, entry: Profile, make_default: bool = True) -> Path:
    from gpufleet.tls import write_private

    data = load()
    key = same_hub(hub)
    for old in [k for k in data["hubs"] if same_hub(str(k)) == key]:
        del data["hubs"][old]  # one entry per hub, whichever name it was written under
    data["hubs"][key] = {k: v for k, v in asdict(entry).items() if v}
    if make_default or not data.get("default") or same_hub(str(data["default"])) == key:
        data["default"] = hub
    path = config_path()
    write_private(path, (HEADER + yaml.safe_dump(data, sort_keys=True)).encode())
    return path


def channel(hub: str, options: list[tuple[str, int]]) -> grpc.Channel:
    import grpc

    entry = profile(hub)
    if entry.insecure:
        return grpc.insecure_channel(hub, options=options)
    try:
        files = [Path(p).read_bytes() for p in (entry.ca, entry.key, entry.cert)]
    except OSError as exc:
        raise CliError(
            f"cannot read the credential for {hub} ({exc.filename}: {exc.strerror}): "
            f"log in again with `hubctl login --hub {hub} --token T`",
            exit_code=2,
        ) from None
    credentials = grpc.ssl_channel_credentials(*files)
    return grpc.secure_channel(hub, credentials, options=[*options, *TLS_OPTIONS])
