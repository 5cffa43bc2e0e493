"""Environments and wheels <-> protobuf, one place per type (EnvInfo, WheelMeta)."""

from __future__ import annotations

from collections.abc import Sequence

from agent.envs.record import EnvRecord, WheelInfo
from gpufleet.v1 import agent_link_pb2 as pb


def env_to_proto(record: EnvRecord, projects: Sequence[str] = ()) -> pb.EnvInfo:
    """`projects`: the host process projects that run from it now."""
    found = pb.EnvInfo(
        projects=list(projects),
        name=record.name,
        backend=record.backend,
        version=record.version,
        state=record.state,
        message=record.message,
        gpu_offload=record.gpu_offload,
        devices=list(record.devices),
        size_bytes=record.size_bytes,
        origin=record.origin,
        key=record.key,
        system_info=record.system_info,
    )
    if record.built_at:
        found.built_at.FromNanoseconds(int(record.built_at * 1e9))
    return found


def envs_report(envs: Sequence[tuple[EnvRecord, Sequence[str]]]) -> pb.EnvsReport:
    return pb.EnvsReport(envs=[env_to_proto(record, projects) for record, projects in envs])


def wheel_to_proto(info: WheelInfo) -> pb.WheelMeta:
    found = pb.WheelMeta(key=info.key, filename=info.filename, size=info.size,
                         sha256=info.sha256, parts=dict(info.parts),
                         built_on=info.built_on)  # fmt: skip
    if info.built_at:
        found.built_at.FromNanoseconds(int(info.built_at * 1e9))
    return found


def wheel_from_proto(meta: pb.WheelMeta) -> WheelInfo:
    built_at = meta.built_at.ToNanoseconds() / 1e9 if meta.HasField("built_at") else 0.0
    return WheelInfo(meta.key, meta.filename, meta.size, meta.sha256, dict(meta.parts),
                     meta.built_on, built_at)  # fmt: skip
