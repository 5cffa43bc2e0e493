"""The hub's gRPC server: start, liveness watch, clean stop."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import grpc
import sqlalchemy.exc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

import gpufleet
from gpufleet.channel import SETTINGS
from gpufleet.v1 import agent_link_pb2
from hub import services
from hub.api import HubService
from hub.assign import AssignmentService
from hub.envs.cache import WheelCacheService
from hub.envs.service import EnvsService
from hub.envs.view import NodeEnvs
from hub.envs.wheels import WheelStore
from hub.gateway.observe import Observer
from hub.gateway.scaler import Scaler
from hub.gateway.service import GatewayService
from hub.http import HttpEndpoint
from hub.keys.service import ApiKeysService
from hub.link import AgentLinkService, pace_message, utcnow
from hub.metrics import StoreCollector, scrape
from hub.models.deploy import DEFAULT_VLLM_IMAGE
from hub.models.running import Cluster
from hub.models.service import ModelsService
from hub.ops.manager import OperationManager
from hub.pace import Pacer
from hub.registry.caches import NodeCaches
from hub.registry.fetch_service import RegistryFetchService
from hub.registry.kinds import Fetching
from hub.registry.service import RegistryService
from hub.registry.store import ObjectStore, StoreError, open_store
from hub.sessions import MISSED_HEARTBEATS, SessionRegistry, Updates
from hub.states import NodeState
from hub.store import Database, Store, migrate, sqlite_url
from hub.store.db import Corrupted, MigrationFailed, check_integrity, describe, migrate_apart
from hub.store.operations import OperationStore
from hub.store.trust import TrustStore
from hub.store.usage import UsageStore
from hub.telemetry import DEFAULT_RETENTION, Downsampler, Retention, TelemetryRecorder
from hub.trust.audit_log import AuditLog
from hub.trust.auth import AuthInterceptor
from hub.trust.callers import Authenticator
from hub.trust.pki import PkiError
from hub.trust.service import EnrollmentService, TrustService
from hub.trust.setup import Trust, prepare
from hub.work import Work

log = logging.getLogger(__name__)

PACE_EVERY_S = 2.0  # the watcher re-evaluates the agents' heartbeat interval this often
# The repository's configs/ (a source or editable install); packaged hubs pass --configs.
DEFAULT_CONFIGS = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_MODELS = DEFAULT_CONFIGS / "models"  # likewise; packaged hubs pass --models


DEFAULT_CERT_TTL = timedelta(days=30)


class StartError(Exception):
    """The hub cannot start; the message says why and what to do."""


@dataclass(frozen=True)
class HubConfig:
    listen: str
    state_dir: Path
    db_url: str | None = None
    heartbeat_interval: float = 5.0  # the shortest interval agents are told
    http: str | None = None  # HOST:PORT for /metrics and /healthz
    configs_dir: Path = DEFAULT_CONFIGS
    insecure: bool = False  # plaintext, nobody authenticated: local development only
    enroll_listen: str | None = None  # default: the --listen host, port + 1
    cert_ttl: timedelta = DEFAULT_CERT_TTL
    models_dir: Path = DEFAULT_MODELS
    vllm_image: str = DEFAULT_VLLM_IMAGE  # what a vLLM model without an image runs in
    registry: str | None = None  # --registry: a directory or s3://BUCKET/PREFIX; default state
    # Spawn a configurations worker at start (the daemon does; in-process test hubs need not).
    prestart: bool = False
    # Migrate the schema in a child process (the daemon does: Alembic's modules stay out of
    # its memory; in-process test hubs need not pay the child's start).
    migrate_apart: bool = False
    heartbeat_rate: float = 100.0  # heartbeats a second the whole hub aims at (--heartbeat-rate)
    retention: Retention = DEFAULT_RETENTION  # --telemetry-raw, --telemetry-keep, --history-keep

    @property
    def enrollment_address(self) -> str:
        if self.enroll_listen:
            return self.enroll_listen
        host, _, port = self.listen.rpartition(":")
        return f"{host}:{int(port) + 1 if int(port) else 0}"

    @property
    def database_url(self) -> str:
        return self.db_url or sqlite_url(self.state_dir)


def _listen(
    server: grpc.aio.Server, address: str, flag: str, trust: Trust | None, mutual: bool
) -> int:
    try:
        if trust is None:
            return server.add_insecure_port(address)
        credentials = trust.mutual_tls() if mutual else trust.server_tls()
        return server.add_secure_port(address, credentials)
    except RuntimeError:
        raise StartError(
            f"cannot listen on {address}: {_bind_problem(address)}; "
            f"stop what holds it or choose another with {flag}"
        ) from None


def _bind_problem(address: str) -> str:
    """Why gRPC could not bind `address` (it only says that it could not)."""
    host, _, port = address.rpartition(":")
    try:
        infos = socket.getaddrinfo(host.strip("[]") or None, int(port), type=socket.SOCK_STREAM)
        family, kind, proto, _, where = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.bind(where)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return "address already in use (is another hub running?)"
        return f"{exc.strerror or exc}"
    except (ValueError, IndexError):
        return "not a HOST:PORT address"
    return "the address is not available on this host"


class HubServer:
    def __init__(self, config: HubConfig, monotonic: Callable[[], float] = time.monotonic):
        self.config = config
        self.monotonic = monotonic
        self.registry = SessionRegistry()
        self.pacer = Pacer(config.heartbeat_interval, config.heartbeat_rate)
        self.envs = NodeEnvs()  # each node's llama-cpp-python environments, as reported
        self.caches = NodeCaches()  # each node's model cache, as reported
        self.port = 0
        self._db: Database | None = None
        self._server: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        self._watcher: asyncio.Task[None] | None = None
        self._scaling: asyncio.Task[None] | None = None
        self._telemetry: list[asyncio.Task[None]] = []
        self.recorder: TelemetryRecorder | None = None
        self._held = Updates({}, {}, {})  # heartbeat writes merged while the database fails
        self.work = Work()  # CPU-heavy calls run in its worker processes, started on first use
        self._http = HttpEndpoint(self.metrics, self.problem)
        self.http_port = 0
        self.enroll_port = 0
        self.trust: Trust | None = None
        self.prometheus = CollectorRegistry(auto_describe=True)
        self.step_seconds = Histogram(
            "gpufleet_switch_step_seconds", "Duration of each switch step on a node.",
            ["step"], registry=self.prometheus,
            buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1200),
        )  # fmt: skip
        self.operations_total = Counter(
            "gpufleet_operations", "Operations by kind and how they ended.",
            ["kind", "status"], registry=self.prometheus,
        )  # fmt: skip

    @property
    def db(self) -> Database:
        assert self._db is not None, "HubServer.start() first"
        return self._db

    async def start(self) -> None:
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        self._db = Database(self.config.database_url)
        try:
            await self._db.call(check_integrity, self._db.engine)
        except Corrupted as exc:
            where = self._db.engine.url.database
            raise StartError(
                f"database {where} is damaged ({exc}): restore it from a backup, or move it "
                "away to start with an empty one (agents reconnect, history is lost)"
            ) from None
        self.prometheus.register(StoreCollector(self._db))
        store = Store(self._db.engine)
        try:
            await self._db.call(
                migrate_apart if self.config.migrate_apart else migrate, self._db.engine
            )
        except MigrationFailed as exc:
            where = self._db.engine.url.render_as_string(hide_password=True)
            raise StartError(f"cannot migrate database {where}: {exc}") from None
        reset = await self._db.call(store.mark_all_down, utcnow())
        if reset:
            log.info("marked %d nodes down until their agents reconnect", reset)
        ops = OperationStore(self._db.engine)
        interrupted = await self._db.call(ops.interrupt_running, utcnow())
        if interrupted:
            log.warning("operations interrupted by the restart: %s", ", ".join(interrupted))
        self.manager = OperationManager(
            self.registry, self._db, ops,
            observe_step=lambda step, took: self.step_seconds.labels(step).observe(took),
            on_finish=lambda kind, status: self.operations_total.labels(kind, status).inc(),
            drained=await self._db.call(ops.nodes_in_state, NodeState.DRAINING),
        )  # fmt: skip

        usage = UsageStore(self._db.engine)
        self.recorder = TelemetryRecorder(self._db, usage)
        downsampler = Downsampler(self._db, usage, self.config.retention, recorder=self.recorder)
        trust_store = TrustStore(self._db.engine)
        if self.config.insecure:
            self.auth = Authenticator(insecure=True, clock=utcnow)
            log.warning("--insecure: plaintext gRPC, every caller may do anything")
        else:
            try:
                self.trust = await prepare(
                    self.config.state_dir, self._db, trust_store, self.config.cert_ttl, utcnow
                )
            except PkiError as exc:
                raise StartError(str(exc)) from None
            self.auth = self.trust.auth
        self.audit_log = AuditLog(self._db, trust_store)
        interceptor = AuthInterceptor(self.auth, self.audit_log.record)
        server = grpc.aio.server(options=SETTINGS.server_options(), interceptors=[interceptor])
        link = AgentLinkService(
            self.registry,
            self._db,
            store,
            self.pacer,
            gpufleet.__version__,
            self.monotonic,
            self.manager.node_connected,
            self.envs,
            self.caches,
            self.recorder,
        )
        issuer = self.trust.issuer if self.trust is not None else None
        self._link = link
        wheels = WheelStore(self.config.state_dir / "wheels")
        await asyncio.to_thread(wheels.prepare)  # leftovers of interrupted uploads go
        hub = HubService(
            self.registry, self._db, store, ops, self.manager, self.config.configs_dir,
            self.work, models_dir=self.config.models_dir, vllm_image=self.config.vllm_image,
            retention=self.config.retention,
        )  # fmt: skip
        cluster = Cluster(
            self.registry, self._db, store, self.manager, self.config.configs_dir,
            self.config.vllm_image, self.envs,
        )  # fmt: skip
        self.objects = await self._registry()
        registry = RegistryService(
            self._db, self.objects, self.caches, self.registry, self.manager, store,
            self.config.models_dir, self.config.state_dir, self.work,
        )  # fmt: skip
        await registry.prepare()  # imports a stop interrupted: failed, their files gone
        observer = Observer(cluster, self.config.models_dir, self.work)
        fetching = Fetching(self.objects, self.caches)
        self.scaler = Scaler(cluster, observer, self.config.models_dir, self.work,
                             fetching=fetching)  # fmt: skip
        self.gateway = gateway = GatewayService(self._db, observer, self.scaler, hub)
        servicers = {
            "link": link,
            "hub": hub,
            "assign": AssignmentService(
                self.registry, self._db, self.manager, self.config.configs_dir,
                self.config.state_dir, self.work, models_dir=self.config.models_dir,
            ),
            "models": ModelsService(self.config.models_dir, self.work, cluster, fetching),
            "envs": EnvsService(self.envs, self.registry, self._db, store, self.manager, wheels),
            "wheels": WheelCacheService(wheels),
            "gateway": gateway,
            "keys": ApiKeysService(self._db, on_change=gateway.keys_changed),
            "registry": registry,
            "registry_fetch": RegistryFetchService(self._db, self.objects),
            "enrollment": EnrollmentService(issuer) if issuer is not None else None,
            "trust": TrustService(
                self._db, trust_store, self.auth, self.registry, issuer,
                self.trust.pin if self.trust is not None else "", utcnow,
            ),
        }  # fmt: skip
        names = services.register(server, servicers, insecure=self.trust is None)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            [*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
        )
        self.port = _listen(server, self.config.listen, "--listen", self.trust, mutual=True)
        if self.trust is not None:
            self.enroll_port = _listen(
                server, self.config.enrollment_address, "--enroll-listen", self.trust, mutual=False
            )
        await server.start()
        self._server = server
        for name in ["", *(s.full_name for s in services.SERVICES if s.health)]:
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._store = store
        self._watcher = asyncio.create_task(self._watch(store), name="liveness")
        self._scaling = asyncio.create_task(self.scaler.run(), name="gateway-scaler")
        if self.config.prestart:  # the first switch does not wait for a configs worker to spawn
            self.work.prestart()
        self._telemetry = [
            asyncio.create_task(self.recorder.run(), name="telemetry-recorder"),
            asyncio.create_task(downsampler.run(), name="telemetry-downsampler"),
        ]
        if self.trust is None:
            log.info("hub %s listening on %s (plaintext)", gpufleet.__version__, self.config.listen)
        else:
            log.info(
                "hub %s listening on %s (mutual TLS), enrollment on %s (TLS)",
                gpufleet.__version__, self.config.listen, self.config.enrollment_address,
            )  # fmt: skip
        if self.config.http:
            host, _, port = self.config.http.rpartition(":")
            try:
                self.http_port = await self._http.start(host.strip("[]") or "0.0.0.0", int(port))
            except (OSError, ValueError) as exc:
                raise StartError(
                    f"cannot serve HTTP on {self.config.http} ({exc}): choose another --http"
                ) from None
            log.info("metrics on http://%s/metrics", self.config.http)

    async def _registry(self) -> ObjectStore:
        """The registry's object store, ready for use."""
        try:
            objects = open_store(self.config.registry, self.config.state_dir)
            await objects.prepare()
        except StoreError as exc:
            raise StartError(str(exc)) from None
        log.info("model registry in %s", objects.describe())
        return objects

    def problem(self) -> str:
        """Why the hub is not healthy now ("" when it is), for /healthz."""
        if self._server is None:
            return "not serving"
        return self._db.problem() if self._db is not None else ""

    async def metrics(self) -> bytes:
        """/metrics: the cluster read on a database reader thread (plain rows, the live state
        over them), never on the writer thread nor the event loop; then the hub's own."""
        try:
            cluster = await self.db.read(scrape, self.registry.live, len(self.registry), utcnow())
        except sqlalchemy.exc.DBAPIError as exc:  # the store metrics still say why
            log.warning("metrics without the cluster: cannot read the database: %s",
                        describe(exc))  # fmt: skip
            return generate_latest(self.prometheus)
        return cluster + generate_latest(self.prometheus)

    async def _watch(self, store: Store) -> None:
        """Pace the agents, close streams whose heartbeats stopped, batch what changed into the
        database. A tick that comes late measures the hub's own stall (a blocked or saturated
        loop): that time counts against no session's silence."""
        interval = self.config.heartbeat_interval
        tick = min(1.0, interval / 4)
        last = self.monotonic()
        next_flush, next_pace = last + interval, last + PACE_EVERY_S
        while True:
            await asyncio.sleep(tick)
            now = self.monotonic()
            # Lateness within one more tick is the loop's ordinary business, not a stall: so
            # even a hub late at every tick counts 2 ticks of each against a hung agent.
            self.registry.credit(max(0.0, now - last - 2 * tick))
            last = now
            if now >= next_pace:
                next_pace = now + PACE_EVERY_S
                self._repace()
            for session in self.registry.expired(now):
                session.close(
                    f"no heartbeat for {self.registry.silence(session, now):.1f} s "
                    f"({MISSED_HEARTBEATS} intervals of {session.liveness_interval:g} s)",
                    grpc.StatusCode.UNAVAILABLE,
                )
            if now >= next_flush:
                next_flush = now + interval
                self._flush(store, self.registry.take_updates(now))

    def _repace(self) -> None:
        """Tell every agent the new heartbeat interval when the cluster grew or shrank enough."""
        pace = self.pacer.update(len(self.registry))
        if pace is None:
            return
        log.info("%d agents connected: heartbeats every %g s, telemetry at least every %g s",
                 len(self.registry), pace.heartbeat_s, pace.telemetry_s)  # fmt: skip
        message = pace_message(pace)
        for session in self.registry:
            session.pace(pace.heartbeat_s, pace.telemetry_s, message)

    def _flush(self, store: Store, updates: Updates) -> None:
        """Queue one batch of heartbeat writes. While the database refuses writes, batches
        merge here (the latest per node wins) instead of piling up one per interval."""
        held = self._held
        held.seen.update(updates.seen)
        held.telemetry.update(updates.telemetry)
        held.inventories.update(updates.inventories)
        if self.db.pending:
            return
        for name, inventory in held.inventories.items():
            self.db.submit(store.replace_inventory, name, *inventory)
        self.db.submit(store.record_heartbeats, held.seen, held.telemetry)
        self._held = Updates({}, {}, {})

    async def stop(self, grace: float) -> None:
        """Tell every agent to go, finish the streams within `grace`, leave the database consistent.

        Also releases what a failed start() opened."""
        await self._http.stop()
        if self._scaling is not None:  # no start or stop decided from here on
            self._scaling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scaling
        self.work.close()
        if hasattr(self, "manager"):
            await self.manager.shutdown()
        if self._server is None:
            if self._db is not None:
                self._db.close()
            return
        await self._health.enter_graceful_shutdown()
        await self.gateway.routes.close()  # the gateways' route streams end now, not at grace
        self._link.stopping = True
        for session in self.registry:
            session.send(
                agent_link_pb2.HubMessage(
                    goodbye=agent_link_pb2.Goodbye(reason="hub shutting down")
                )
            )
            session.close("hub shutting down")
        server, self._server = self._server, None
        await server.stop(grace)
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        for task in self._telemetry:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._link.registrar.close()
        ended, self._link.ended = self._link.ended, []
        self.db.submit(self._store.mark_down_many, utcnow(), ended)
        self.audit_log.flush()  # the ended streams' entries, before the database closes
        if self.recorder is not None:
            self.recorder.flush(final=True)  # written before the database closes
        if self._db is not None:
            self._db.close()
        log.info("hub stopped")
