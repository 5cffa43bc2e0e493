"""The gateway's HTTP application: OpenAI routes by model, monitoring routes, probes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import unquote

import aiohttp
from aiohttp import web

from gateway.auth import authenticate, authorize
from gateway.errors import GatewayError, unavailable
from gateway.follow import Routes
from gateway.hub import Hub, HubUnavailable
from gateway.metrics import UNKNOWN_MODEL, Metrics
from gateway.monitor import gpu_stats_json, models_json, services_json
from gateway.proxy import Proxy, error_response
from gateway.router import Router
from gateway.table import KeyHash, Table

DEFAULT_MAX_BODY = 32 * 1024 * 1024
# Past this long without word from the hub, revoked keys may still be in the table: keyed
# requests are refused.
HUB_SILENCE_LIMIT_S = 600.0
# An upstream that sends nothing for this long (a powered-off node) fails the request.
UPSTREAM_READ_TIMEOUT_S = 600.0


@dataclass
class Settings:
    open: bool = False
    default_model: str | None = None
    max_body: int = DEFAULT_MAX_BODY
    hub_silence_limit_s: float = HUB_SILENCE_LIMIT_S


class Gateway:
    def __init__(
        self, settings: Settings, routes: Routes, hub: Hub | None, router: Router,
        proxy: Proxy, metrics: Metrics,
    ) -> None:  # fmt: skip
        self.settings = settings
        self.routes = routes
        self.hub = hub
        self.router = router
        self.proxy = proxy
        self.metrics = metrics

    def _table(self) -> Table:
        table = self.routes.table
        if table is None:
            raise unavailable("no routing table from the hub yet: retry shortly", 5.0, "not_ready")
        return table

    def _key(self, request: web.Request, table: Table) -> KeyHash | None:
        if self.settings.open:
            return None
        silent = self.routes.silence_s()
        if silent > self.settings.hub_silence_limit_s:
            raise unavailable(
                f"no word from the hub for {silent:.0f} s: API keys cannot be checked "
                "(revoked ones may still be in the table)", 10.0, "hub_silent",
            )  # fmt: skip
        return authenticate(table, request.headers.get("Authorization"))

    async def _body(self, request: web.Request) -> bytes:
        limit = self.settings.max_body
        if request.content_length is not None and request.content_length > limit:
            raise self._too_large()
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise self._too_large() from None

    def _too_large(self) -> GatewayError:
        return GatewayError(
            413, f"request body larger than {self.settings.max_body} bytes (--max-body)",
            "body_too_large",
        )  # fmt: skip

    async def completions(self, request: web.Request) -> web.StreamResponse:
        path = upstream_path(request)
        if path is None:
            return await self.not_found(request)
        try:
            table = self._table()
            key = self._key(request, table)
            body = await self._body(request)
            try:
                document = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                raise GatewayError(400, "the request body is not JSON", "invalid_json") from None
            if not isinstance(document, dict):
                raise GatewayError(400, "the request body is not a JSON object", "invalid_body")
            asked = document.get("model")
            if asked is None or asked == "":
                asked = self.settings.default_model
                if asked is None:
                    raise GatewayError(
                        400, "the request names no model and the gateway has no default: "
                        "send \"model\" or start it with --default-model NAME",
                        "model_missing", param="model",
                    )  # fmt: skip
            if not isinstance(asked, str):
                raise GatewayError(400, '"model" must be a string', "invalid_model", "model")
            model = table.lookup(asked)
            if model is None:
                raise self._unknown(table, asked, key)
            authorize(key, model.name)
            if document.get("model") != model.served:
                document["model"] = model.served
                body = json.dumps(document).encode()
        except GatewayError as exc:
            self.metrics.requests.labels(UNKNOWN_MODEL, str(exc.status)).inc()
            self.metrics.errors.labels(UNKNOWN_MODEL, exc.code).inc()
            return error_response(exc)
        stream = document.get("stream") is True
        return await self.proxy.handle(request, model, body, stream, path)

    @staticmethod
    def _unknown(table: Table, asked: str, key: KeyHash | None) -> GatewayError:
        close = table.close_names(asked, key.models if key is not None else frozenset())
        hint = f"; did you mean {', '.join(close)}?" if close else "; see /v1/models"
        return GatewayError(
            404, f"model {asked!r} does not exist{hint}", "model_not_found", "model"
        )

    async def _monitor(self, request: web.Request) -> tuple[Table, KeyHash | None]:
        table = self._table()
        return table, self._key(request, table)

    async def models(self, request: web.Request) -> web.Response:
        try:
            table, key = await self._monitor(request)
        except GatewayError as exc:
            return error_response(exc)
        return web.json_response(models_json(table, key))

    async def services(self, request: web.Request) -> web.Response:
        try:
            table, _ = await self._monitor(request)
        except GatewayError as exc:
            return error_response(exc)
        return web.json_response(services_json(table, self.router))

    async def gpu_stats(self, request: web.Request) -> web.Response:
        try:
            table, _ = await self._monitor(request)
            if self.hub is None:
                return web.json_response({"gpus": [], "message": "static --routes: no hub"})
            try:
                rows = await self.hub.gpu_stats()
            except HubUnavailable as exc:
                raise unavailable(f"cannot ask the hub for GPU figures: {exc}", 5.0) from None
        except GatewayError as exc:
            return error_response(exc)
        return web.json_response(gpu_stats_json(rows, table))

    async def metrics_page(self, request: web.Request) -> web.Response:
        try:
            await self._monitor(request)
        except GatewayError as exc:
            return error_response(exc)
        return web.Response(
            body=self.metrics.render(), headers={"Content-Type": self.metrics.content_type}
        )

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        table = self.routes.table
        if table is None:
            return web.json_response(
                {"status": "waiting for the routing table from the hub"}, status=503
            )
        silent = round(self.routes.silence_s(), 1)
        if silent > self.settings.hub_silence_limit_s:
            return web.json_response(
                {"status": f"no word from the hub for {silent:.0f} s",
                 "generation": table.generation, "table_age_s": silent}, status=503,
            )  # fmt: skip
        return web.json_response(
            {"status": "ready", "generation": table.generation, "table_age_s": silent}
        )

    async def not_found(self, request: web.Request) -> web.Response:
        return error_response(GatewayError(404, f"no route {request.path}", "route_not_found"))


def upstream_path(request: web.Request) -> str | None:
    """The path and query to send upstream: a /v1/ path with no dot segment and no encoded
    slash, checked on the raw path and on the normalised one; None for anything else."""
    raw, mark, query = request.raw_path.partition("?")
    if "%2f" in raw.lower() or "%5c" in raw.lower() or "\\" in raw:
        return None
    if any(part in (".", "..") for part in unquote(raw).split("/")):
        return None
    if not raw.startswith("/v1/") or not request.path.startswith("/v1/"):
        return None
    return raw + mark + query


def make_app(gateway: Gateway) -> web.Application:
    # The body limit is checked by the handler (an OpenAI-shaped 413); this one is a backstop.
    app = web.Application(client_max_size=gateway.settings.max_body + 1)
    app.router.add_get("/healthz", gateway.healthz)
    app.router.add_get("/readyz", gateway.readyz)
    app.router.add_get("/metrics", gateway.metrics_page)
    app.router.add_get("/v1/models", gateway.models)
    app.router.add_get("/services", gateway.services)
    app.router.add_get("/gpu-stats", gateway.gpu_stats)
    app.router.add_post("/v1/{tail:.+}", gateway.completions)
    app.router.add_route("*", "/{tail:.*}", gateway.not_found)
    return app


def client_session() -> aiohttp.ClientSession:
    """One pooled session for every upstream: keep-alive, bodies passed as they are."""
    # Idle connections go after 4 s: before the model servers' own 5 s keep-alive (uvicorn,
    # llama.cpp) closes them under a request.
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=4, ttl_dns_cache=300)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=UPSTREAM_READ_TIMEOUT_S)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        auto_decompress=False,
        skip_auto_headers=("Accept-Encoding", "User-Agent"),
    )
