"""gpufleet-hub: the command line of the hub daemon."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
from datetime import timedelta
from pathlib import Path
from typing import NoReturn

import sqlalchemy.exc
from sqlalchemy.engine import make_url

import gpufleet
from gpufleet import sdnotify, settings
from hub import heap
from hub.models.deploy import DEFAULT_VLLM_IMAGE
from hub.models.params import IMAGE
from hub.pace import describe
from hub.registry.store import StoreError, check_spec
from hub.server import DEFAULT_CONFIGS, DEFAULT_MODELS, HubConfig, HubServer, StartError
from hub.telemetry import policy

log = logging.getLogger("hub")

DEFAULT_LISTEN = "127.0.0.1:7443"


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "gpufleet" / "hub"


def positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def image(text: str) -> str:
    if not IMAGE.match(text):
        raise argparse.ArgumentTypeError(
            f"{text[:80]!r} is not an image reference such as docker.io/vllm/vllm-openai:v0.10.0"
        )
    return text


def registry(text: str) -> str:
    try:
        return check_spec(text)
    except StoreError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--registry ")) from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gpufleet-hub", description="Run the gpufleet hub.")
    parser.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"gRPC address for agents and clients (default {DEFAULT_LISTEN})",
    )
    parser.add_argument(
        "--configs", type=Path, default=DEFAULT_CONFIGS, metavar="DIR",
        help=f"configurations directory: one compose file each (default {DEFAULT_CONFIGS})",
    )  # fmt: skip
    parser.add_argument(
        "--http", metavar="HOST:PORT",
        help="serve Prometheus /metrics and /healthz here (default: off)",
    )  # fmt: skip
    parser.add_argument(
        "--models", type=Path, default=DEFAULT_MODELS, metavar="DIR",
        help=f"model definitions directory: one YAML file per model (default {DEFAULT_MODELS})",
    )  # fmt: skip
    parser.add_argument(
        "--vllm-image", type=image, default=DEFAULT_VLLM_IMAGE, metavar="IMAGE",
        help="the container image of vLLM models that name none (default "
        f"{DEFAULT_VLLM_IMAGE})",
    )  # fmt: skip
    parser.add_argument(
        "--registry", type=registry, metavar="DIR|s3://BUCKET/PREFIX",
        help="where the model registry keeps its files: a directory, or an S3-compatible "
        "bucket (endpoint, region and credentials from the usual AWS settings, e.g. "
        "AWS_ENDPOINT_URL_S3) (default: registry/ in the state dir)",
    )  # fmt: skip
    parser.add_argument(
        "--db", metavar="URL", help="SQLAlchemy URL (default: SQLite file hub.db in the state dir)"
    )
    parser.add_argument(
        "--state-dir", type=Path, default=default_state_dir(), metavar="DIR",
        help="hub.db and pki/ (the CA, the server and admin certificates) live here",
    )  # fmt: skip
    parser.add_argument(
        "--enroll-listen", metavar="HOST:PORT",
        help="TLS address where new agents join with a token and operators log in "
        "(default: the --listen host, port + 1)",
    )  # fmt: skip
    parser.add_argument(
        "--insecure", action="store_true",
        help="plaintext gRPC with no authentication: local development only",
    )  # fmt: skip
    parser.add_argument(
        "--cert-days", type=positive, default=30.0, metavar="DAYS",
        help="lifetime of the client certificates the hub issues; agents renew at 2/3 "
        "(default 30)",
    )  # fmt: skip
    parser.add_argument(
        "--heartbeat-interval",
        type=positive,
        default=5.0,
        metavar="SECONDS",
        help="agents heartbeat at least this often apart; 3 missed mark a node down; larger "
        "clusters get longer intervals (--heartbeat-rate) (default 5)",
    )
    parser.add_argument(
        "--heartbeat-rate", type=positive, default=100.0, metavar="PER_SECOND",
        help="heartbeats a second the whole hub aims at: each agent's interval is the agents "
        "connected / this, whole seconds, at least --heartbeat-interval; telemetry rides on "
        "heartbeats when it changed and at least every max(60 s, interval). The defaults give "
        f"{describe(1000, 5.0, 100.0)}; {describe(10000, 5.0, 100.0)} (default 100)",
    )  # fmt: skip
    parser.add_argument(
        "--telemetry-raw", type=policy.argument, default="1h", metavar="DURATION",
        help="keep every GPU telemetry sample this long, then hourly aggregates (default 1h)",
    )  # fmt: skip
    parser.add_argument(
        "--telemetry-keep", type=policy.argument, default="14d", metavar="DURATION",
        help="keep hourly GPU usage this long (default 14d)",
    )  # fmt: skip
    parser.add_argument(
        "--history-keep", type=policy.argument, default="90d", metavar="DURATION",
        help="keep the audit log, node events and transitions, and finished operations this "
        "long (default 90d)",
    )  # fmt: skip
    parser.add_argument(
        "--grace",
        type=positive,
        default=10.0,
        metavar="SECONDS",
        help="time open streams get to finish on SIGTERM (default 10)",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {gpufleet.__version__}")
    return settings.parse_args(parser, argv, settings.HUB_CONFIG)


async def serve(config: HubConfig, grace: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = HubServer(config)
    notify = sdnotify.Notifier.from_environment()
    try:
        async with notify.serving(stop):
            await server.start()
            tune_gc()
            notify.ready(f"listening on {config.listen}")
            await stop.wait()
        log.info("stopping (grace %g s)", grace)
    finally:
        await server.stop(grace)


def tune_gc() -> None:
    """What start-up made (about 145,000 objects: modules, protobuf descriptors, the ORM's
    mappings) lives as long as the hub: keep it out of every collection (a full one of the
    idle hub took 85 ms). A larger young generation was tried: less CPU, but it kept about
    45 KiB more per agent alive."""
    gc.collect()
    gc.freeze()


def describe_db_error(url: str, exc: Exception) -> str:
    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return f"invalid --db URL {url!r}: expected e.g. postgresql+psycopg://user@host/gpufleet"
    if isinstance(exc, sqlalchemy.exc.NoSuchModuleError):
        return f"no database driver for {shown}: pip install 'gpufleet[postgres]'"
    first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    return f"cannot open database {shown}: {first}"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if (tuned := heap.tune()) is not None:
        log.info("%s", tuned)
    config = HubConfig(
        args.listen, args.state_dir, args.db, args.heartbeat_interval, args.http, args.configs,
        insecure=args.insecure, enroll_listen=args.enroll_listen,
        cert_ttl=timedelta(days=args.cert_days), models_dir=args.models,
        vllm_image=args.vllm_image, registry=args.registry, heartbeat_rate=args.heartbeat_rate,
        prestart=True, migrate_apart=True,
        retention=policy.Retention(args.telemetry_raw, args.telemetry_keep, args.history_keep),
    )  # fmt: skip
    if (problem := config.retention.problem()) is not None:
        fail(problem)
    try:
        asyncio.run(serve(config, args.grace))
    except StartError as exc:
        fail(str(exc))
    except (
        sqlalchemy.exc.ArgumentError,
        sqlalchemy.exc.DBAPIError,
        sqlalchemy.exc.NoSuchModuleError,
    ) as exc:
        fail(describe_db_error(config.database_url, exc))
    except OSError as exc:
        fail(f"{exc}: check --state-dir and --db")


def fail(message: str) -> NoReturn:
    print(f"gpufleet-hub: {message}", file=sys.stderr)
    sys.exit(2)
