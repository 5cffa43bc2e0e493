"""The hub's and clients' gRPC channel options (gpufleet/channel.py) over real mutual TLS:
the largest message passes both ways, large streams arrive intact, one byte more is refused,
and the settings that trade memory for nothing else stay where they were measured."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from gpufleet.channel import SETTINGS, ChannelSettings
from gpufleet.tls import TLS_OPTIONS, key_pem, make_csr, new_key
from hub.trust.pki import Authority

NOW = datetime.now(UTC)
CHUNK = 3 * 1024 * 1024  # what the registry's Download streams
ENVELOPE = 64  # gRPC's message framing and the protobuf-free bytes' slack


@dataclass(frozen=True)
class Pki:
    ca: bytes
    server: tuple[bytes, bytes]
    client: tuple[bytes, bytes]


def pki(root: Path) -> Pki:
    authority = Authority.load_or_create(root, NOW)
    key = new_key()
    issued = authority.issue(make_csr(key), "node/gpu-a", "agent", timedelta(days=1), NOW)
    return Pki(authority.ca_pem, authority.server_pair(root, NOW), (key_pem(key), issued.pem))


async def echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    return request


async def download(
    request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
) -> AsyncIterator[bytes]:
    rng = random.Random(int.from_bytes(request, "big"))
    for _ in range(4):
        yield rng.randbytes(CHUNK)


async def exchange(material: Pki, work: Callable[[grpc.aio.Channel], Awaitable[None]]) -> None:
    handler = grpc.method_handlers_generic_handler("t.T", {
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "Download": grpc.unary_stream_rpc_method_handler(download),
    })  # fmt: skip
    server = grpc.aio.server(options=SETTINGS.server_options())
    server.add_generic_rpc_handlers([handler])
    credentials = grpc.ssl_server_credentials(
        [material.server], root_certificates=material.ca, require_client_auth=True
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    try:
        client = grpc.ssl_channel_credentials(material.ca, *material.client)
        options = [*SETTINGS.client_options(), *TLS_OPTIONS]
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", client, options) as channel:
            await work(channel)
    finally:
        await server.stop(None)


def test_the_largest_message_passes_both_ways_and_one_more_byte_is_refused(
    tmp_path: Path,
) -> None:
    largest = os.urandom(SETTINGS.max_message_bytes - ENVELOPE)
    too_big = os.urandom(SETTINGS.max_message_bytes + 1)

    async def work(channel: grpc.aio.Channel) -> None:
        call = channel.unary_unary("/t.T/Echo", None, None)
        assert await call(largest, timeout=30) == largest
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(too_big, timeout=30)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    asyncio.run(exchange(pki(tmp_path), work))


def test_a_stream_of_registry_sized_messages_arrives_intact(tmp_path: Path) -> None:
    seed = 7
    rng = random.Random(seed)
    expected = [hashlib.sha256(rng.randbytes(CHUNK)).hexdigest() for _ in range(4)]

    async def work(channel: grpc.aio.Channel) -> None:
        got = [
            hashlib.sha256(message).hexdigest()
            async for message in channel.unary_stream("/t.T/Download", None, None)(
                bytes([seed]), timeout=60
            )
        ]
        assert got == expected

    asyncio.run(exchange(pki(tmp_path), work))


def test_the_hub_and_its_clients_keep_grpcs_tls_record_size() -> None:
    """4 KiB records saved memory but a client once read corrupted data under load."""
    assert "grpc.tsi.max_frame_size" not in dict(SETTINGS.server_options())
    assert "grpc.tsi.max_frame_size" not in dict(SETTINGS.client_options())


def test_clients_may_not_ping_more_often_than_the_server_allows() -> None:
    with pytest.raises(ValueError, match="more often than the server allows"):
        ChannelSettings(client_ping_s=5, server_min_ping_s=10)
