"""The agent's stable id, kept in its state dir across restarts."""

from __future__ import annotations

import ipaddress
import os
import re
import uuid
from pathlib import Path

ID_FILE = "agent-id"
NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$")
HOST_NAME = re.compile(
    r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
LABEL_KEY = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$")


def agent_id(state_dir: Path) -> str:
    """Read the id, or create it (0600) on first start."""
    path = state_dir / ID_FILE
    try:
        existing = path.read_text().strip()
    except FileNotFoundError:
        existing = ""
    if existing:
        return existing
    state_dir.mkdir(parents=True, exist_ok=True)
    new = str(uuid.uuid4())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(new + "\n")
    return new


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise ValueError(
            f"invalid node name {name!r}: use letters, digits, '.', '_' and '-' "
            "(starting and ending with a letter or digit)"
        )
    return name


def parse_labels(text: str) -> dict[str, str]:
    """'role=chat,zone=a' -> {'role': 'chat', 'zone': 'a'}."""
    labels: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not LABEL_KEY.match(key.strip()):
            raise ValueError(f"invalid label {item!r}: expected key=value, e.g. role=chat")
        labels[key.strip()] = value.strip()
    return labels


def parse_address(text: str) -> str:
    """--advertise-address: a host name or an IP address, as the host part of a URL ("" when
    not given; an IPv6 address comes back in brackets)."""
    if not text:
        return ""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        if len(text) > 253 or not HOST_NAME.match(text):
            raise ValueError(
                f"invalid --advertise-address {text[:64]!r}: give a host name (letters, digits, "
                "'-', '.') or an IP address, e.g. --advertise-address 10.0.0.7"
            ) from None
        return text
    return f"[{ip}]" if ip.version == 6 else str(ip)
