"""The interceptor wraps each method's handler once, not once per call (a stream held its own
closures for its whole life), and every call is still admitted and audited on its own."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc

from hub.store.trust import AuditEntry
from hub.trust.auth import AuthInterceptor
from hub.trust.callers import Authenticator

METHOD = "/gpufleet.v1.Hub/RemoveNode"  # an admin's call: audited whatever its result


@dataclass(frozen=True)
class Details(grpc.HandlerCallDetails):  # type: ignore[misc]
    method: str
    invocation_metadata: tuple[tuple[str, str], ...] = ()


class PeerContext:
    """What the interceptor reads of gRPC's servicer context."""

    def __init__(self, peer: str) -> None:
        self._peer = peer

    def peer(self) -> str:
        return self._peer

    def auth_context(self) -> dict[str, list[bytes]]:
        return {}


async def answer(request: Any, context: Any) -> str:
    return f"done {request}"


def test_each_method_is_wrapped_once_and_every_call_is_audited_on_its_own() -> None:
    audit: list[AuditEntry] = []
    interceptor = AuthInterceptor(
        Authenticator(insecure=True, clock=lambda: datetime.now(UTC)), audit.append
    )
    servicer = grpc.unary_unary_rpc_method_handler(answer)

    async def continuation(details: Any) -> Any:
        return servicer

    async def scenario() -> list[Any]:
        wrapped = [await interceptor.intercept_service(continuation, Details(METHOD))
                   for _ in range(2)]  # fmt: skip
        assert wrapped[0] is wrapped[1]
        replies = [
            await wrapped[0].unary_unary("a", PeerContext("ipv4:10.0.0.1:5000")),
            await wrapped[1].unary_unary("b", PeerContext("ipv4:10.0.0.2:6000")),
        ]
        assert replies == ["done a", "done b"]
        other = await interceptor.intercept_service(continuation, Details(METHOD + "s"))
        assert other is not wrapped[0]
        return wrapped

    asyncio.run(scenario())
    assert [(entry.peer, entry.result) for entry in audit] == [
        ("ipv4:10.0.0.1:5000", "OK"),
        ("ipv4:10.0.0.2:6000", "OK"),
    ]
    assert {entry.action for entry in audit} == {"Hub/RemoveNode"}
