"""Join tokens: `gft1.ID.SECRET.PIN`, shown once; the hub stores only SHA-256(SECRET).

PIN is the hub certificate's public-key hash, so a new host can check it is talking to the
right hub before it sends anything (like kubeadm's discovery hash, carried in the token).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

PREFIX = "gft1"
TOKEN = re.compile(r"^gft1\.([0-9a-f]{12})\.([A-Za-z0-9_-]{32})\.([0-9a-f]{32})$")


@dataclass(frozen=True)
class ParsedToken:
    id: str
    secret: str
    pin: str

    @property
    def secret_hash(self) -> str:
        return hash_secret(self.secret)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token(pin: str) -> tuple[str, ParsedToken]:
    parsed = ParsedToken(secrets.token_hex(6), secrets.token_urlsafe(24), pin)
    return f"{PREFIX}.{parsed.id}.{parsed.secret}.{parsed.pin}", parsed


def parse_token(text: str) -> ParsedToken:
    """ValueError (a line for the user) unless `text` is shaped like a join token."""
    match = TOKEN.match(text.strip())
    if match is None:
        raise ValueError(
            "malformed join token: expected gft1.ID.SECRET.PIN exactly as "
            "`hubctl tokens create` printed it"
        )
    return ParsedToken(*match.groups())
