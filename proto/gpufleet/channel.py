"""What the hub, the agent and hubctl agree on about their gRPC channels, in one place.

The link protocol's version, the message size limit and the keepalive timings. A client
must not ping more often than the server's minimum ping interval, or the server closes the
connection (GOAWAY too_many_pings): both sides read their numbers from here.
"""

from __future__ import annotations

from dataclasses import dataclass

# The AgentLink protocol the agent speaks and the hub accepts; bump on any change the other
# side cannot read (2: TaskEvent carries Progress, TASK_STATUS_CANCELLED; 3: services carry
# their health, heartbeats carry what runs when it changed; 4: the hub paces heartbeats with
# Welcome and Pace, telemetry rides on them only when it changed or is due).
PROTOCOL_VERSION = 4

Options = list[tuple[str, int]]


@dataclass(frozen=True)
class ChannelSettings:
    max_message_bytes: int = 4 * 1024 * 1024
    # Clients ping every client_ping_s; the server accepts pings server_min_ping_s apart and
    # pings idle clients itself every server_ping_s, so a dead TCP peer is noticed without
    # heartbeats too.
    client_ping_s: int = 20
    server_ping_s: int = 30
    server_min_ping_s: int = 10
    ping_timeout_s: int = 10

    def __post_init__(self) -> None:
        if self.client_ping_s < self.server_min_ping_s:
            raise ValueError("clients would ping more often than the server allows")

    def _limits(self) -> Options:
        return [
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.max_send_message_length", self.max_message_bytes),
        ]

    def client_options(self) -> Options:
        return [
            ("grpc.keepalive_time_ms", self.client_ping_s * 1000),
            ("grpc.keepalive_timeout_ms", self.ping_timeout_s * 1000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
            *self._limits(),
        ]

    def server_options(self) -> Options:
        return [
            ("grpc.keepalive_time_ms", self.server_ping_s * 1000),
            ("grpc.keepalive_timeout_ms", self.ping_timeout_s * 1000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", self.server_min_ping_s * 1000),
            ("grpc.http2.max_pings_without_data", 0),
            # Off: a second hub on a port a running hub holds must fail, not split agents.
            ("grpc.so_reuseport", 0),
            # Not set: grpc.tsi.max_frame_size (4 KiB TLS records saved 7 KiB per mutual-TLS
            # link, grpc 1.85), because with it a client once read TSI_DATA_CORRUPTED from the
            # hub under a 10,000-agent reconnect storm. bench.link_memory measures both.
            # A restart's reconnect storm: gRPC cancels calls its event loop has not taken up
            # past 1,000 pending (3,000 hard) or 30 s. With 5,000 calls arriving while the loop
            # was blocked for 5 s, 2,294 were cancelled at those defaults and none at these.
            ("grpc.server.max_pending_requests", 20_000),
            ("grpc.server.max_pending_requests_hard_limit", 40_000),
            ("grpc.server_max_unrequested_time_in_server", 60),
            *self._limits(),
        ]


SETTINGS = ChannelSettings()
