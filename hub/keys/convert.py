"""API keys as protobuf: the one place the keys layer meets gateway.proto."""

from __future__ import annotations

from gpufleet.v1 import gateway_pb2
from hub.convert import timestamp
from hub.store.keys import ApiKey


def key_to_proto(key: ApiKey) -> gateway_pb2.ApiKey:
    return gateway_pb2.ApiKey(
        name=key.name, prefix=key.prefix, models=list(key.models), created=timestamp(key.created),
        created_by=key.created_by, revoked=timestamp(key.revoked),
    )  # fmt: skip
