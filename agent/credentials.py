"""The agent's certificate: stored at join, used on every dial, renewed before it expires.

STATE_DIR/tls/ holds ca.crt (the hub's CA), agent.key (0600) and agent.crt. The files are
read at each dial, so a renewed certificate is used from the next connection on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.x509.oid import NameOID

from gpufleet.enroll import Enrolled
from gpufleet.tls import TLS_OPTIONS, key_pem, make_csr, new_key, write_private, write_public
from gpufleet.v1 import trust_pb2, trust_pb2_grpc

log = logging.getLogger(__name__)

ChannelFactory = Callable[[], AbstractAsyncContextManager[grpc.aio.Channel]]
RENEW_AT = 2 / 3  # of the certificate's lifetime
RETRY_S = 60.0


class NotEnrolled(Exception):
    """No usable certificate; the message says how to get one."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class AgentTls:
    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / "tls"
        self.ca, self.key, self.cert = (self.dir / n for n in ("ca.crt", "agent.key", "agent.crt"))

    @property
    def enrolled(self) -> bool:
        return self.ca.exists() and self.key.exists() and self.cert.exists()

    def save(self, enrolled: Enrolled) -> None:
        write_public(self.ca, enrolled.ca_pem)
        write_private(self.key, enrolled.key_pem)
        write_public(self.cert, enrolled.cert_pem)

    def certificate(self) -> x509.Certificate:
        try:
            return x509.load_pem_x509_certificate(self.cert.read_bytes())
        except (OSError, ValueError) as exc:
            raise NotEnrolled(f"cannot read {self.cert}: {exc}: join again") from None

    def node_name(self) -> str:
        """The name the hub certified: what this agent must call itself."""
        names = self.certificate().subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        kind, _, name = str(names[0].value if names else "").partition("/")
        if kind != "node" or not name:
            raise NotEnrolled(f"{self.cert} is not a node certificate: join again")
        return name

    def credentials(self) -> grpc.ChannelCredentials:
        try:
            return grpc.ssl_channel_credentials(
                self.ca.read_bytes(), self.key.read_bytes(), self.cert.read_bytes()
            )
        except OSError as exc:
            raise NotEnrolled(f"cannot read the agent's certificate: {exc}") from None

    def channel_factory(self, hub: str, options: Sequence[tuple[str, int]]) -> ChannelFactory:
        def factory() -> AbstractAsyncContextManager[grpc.aio.Channel]:
            return grpc.aio.secure_channel(
                hub, self.credentials(), options=[*options, *TLS_OPTIONS]
            )

        return factory

    def renew_at(self) -> datetime:
        cert = self.certificate()
        start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
        return start + (end - start) * RENEW_AT

    async def renew(self, channel: ChannelFactory) -> datetime:
        """A new key and certificate from the hub, over the agent's own authenticated link."""
        key = new_key()
        request = trust_pb2.RenewRequest(csr_pem=make_csr(key).decode())
        async with channel() as chan:
            reply = await trust_pb2_grpc.TrustStub(chan).Renew(request, timeout=30)
        write_private(self.key, key_pem(key))
        write_public(self.cert, reply.certificate_pem.encode())
        return self.certificate().not_valid_after_utc

    async def keep_renewed(
        self,
        channel: ChannelFactory,
        stop: asyncio.Event,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """Renew at 2/3 of each certificate's life; on failure retry every minute."""
        while not stop.is_set():
            wait = max(0.0, (self.renew_at() - clock()).total_seconds())
            if await _stopped(stop, wait):
                return
            try:
                until = await self.renew(channel)
                log.info("certificate renewed, valid until %s", f"{until:%Y-%m-%d %H:%M:%S} UTC")
                if await _stopped(stop, 1.0):  # never a tight loop, whatever the hub issues
                    return
            except (grpc.RpcError, NotEnrolled, OSError) as exc:
                text = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
                left = self.certificate().not_valid_after_utc - clock()
                log.warning("certificate renewal failed (%s); %s left, retrying", text, left)
                retry = min(RETRY_S, max(1.0, left / timedelta(seconds=10)))
                if await _stopped(stop, retry):
                    return


async def _stopped(stop: asyncio.Event, seconds: float) -> bool:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True
