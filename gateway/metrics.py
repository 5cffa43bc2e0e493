"""The gateway's Prometheus series, in a registry of its own (served at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

UNKNOWN_MODEL = "(unknown)"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "gpufleet_gateway_requests", "Requests answered, by model and HTTP status",
            ["model", "code"], registry=r,
        )  # fmt: skip
        self.errors = Counter(
            "gpufleet_gateway_errors", "Requests that failed, by model and error code",
            ["model", "error"], registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "gpufleet_gateway_request_seconds", "Time from request to its last byte",
            ["model"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.ttft = Histogram(
            "gpufleet_gateway_time_to_first_token_seconds",
            "Streaming requests: time from request to the first byte of the upstream's body",
            ["model"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.in_flight = Gauge(
            "gpufleet_gateway_in_flight", "Requests being served (waiting for a load included)",
            ["model"], registry=r,
        )  # fmt: skip
        self.queued = Gauge(
            "gpufleet_gateway_queued", "Requests waiting for their model to load",
            ["model"], registry=r,
        )  # fmt: skip
        self.retries = Counter(
            "gpufleet_gateway_retries",
            "Requests sent to another replica after one failed before answering",
            ["model"], registry=r,
        )  # fmt: skip
        self.cold_starts = Counter(
            "gpufleet_gateway_cold_starts", "Models the gateway asked the hub to start",
            ["model"], registry=r,
        )  # fmt: skip

    def render(self) -> bytes:
        return generate_latest(self.registry)
