"""OpenAI-shaped errors: one exception type, turned into a JSON body or an SSE event."""

from __future__ import annotations

import json
from dataclasses import dataclass

TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    502: "upstream_error",
    503: "service_unavailable",
}


@dataclass
class GatewayError(Exception):
    status: int
    message: str
    code: str
    param: str | None = None
    retry_after: float | None = None

    def __str__(self) -> str:
        return self.message

    @property
    def type(self) -> str:
        return TYPES.get(self.status, "api_error")

    def payload(self) -> dict[str, object]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def body(self) -> bytes:
        return json.dumps(self.payload()).encode()

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, round(self.retry_after)))}

    def sse(self) -> bytes:
        return b"data: " + self.body() + b"\n\n"


def unavailable(message: str, retry_after: float, code: str = "model_unavailable") -> GatewayError:
    return GatewayError(503, message, code, retry_after=retry_after)
