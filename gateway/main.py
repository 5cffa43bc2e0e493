"""gpufleet-gateway: the command line over /etc/gpufleet/gateway.yaml (`gpufleet.settings`),
the first start's enrollment, and the run, with sd_notify for a `Type=notify` unit."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from agent.credentials import NotEnrolled
from agent.identity import check_name
from gateway.app import DEFAULT_MAX_BODY, Settings
from gateway.enroll import TOKEN_ENV, GatewayTls, enroll, resolve_hub
from gateway.follow import Routes, RoutesFileError, load_routes
from gateway.hub import GrpcHub
from gateway.scale import DEFAULT_MAX_QUEUE
from gateway.serve import ListenError, ServeOptions, serve
from gpufleet import sdnotify, settings
from gpufleet.enroll import EnrollError
from gpufleet.tls import split_address

PROG = "gpufleet-gateway"
DEFAULT_STATE_DIR = Path("/var/lib/gpufleet-gateway")
LEVELS = ("debug", "info", "warning", "error")
log = logging.getLogger("gateway")


def fail(message: str) -> NoReturn:
    print(f"{PROG}: {message}", file=sys.stderr)
    sys.exit(2)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        fail(f"{message} (see --help)")


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parser() -> Parser:
    p = Parser(prog=PROG, description="An OpenAI-compatible endpoint for the whole cluster: "
               "routes each request by its model to a healthy server, starts stopped "
               "models.")  # fmt: skip
    p.add_argument("--hub", metavar="HOST:PORT", help="the hub (default: the hub this state "
                   "dir joined, else $GPUFLEET_HUB, else localhost:7443)")  # fmt: skip
    p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, metavar="DIR",
                   help=f"the gateway's credential (default {DEFAULT_STATE_DIR})")  # fmt: skip
    p.add_argument("--name", help="the gateway's name at enrollment (default the host name)")
    p.add_argument("--token", help=f"join token of role gateway, first start only (visible in "
                   f"ps: prefer --token-file or ${TOKEN_ENV})")  # fmt: skip
    p.add_argument("--token-file", metavar="PATH", help="read the join token from PATH")
    p.add_argument("--enroll-port", type=positive, metavar="PORT",
                   help="the hub's enrollment port (default its port + 1)")  # fmt: skip
    p.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT",
                   help="where to serve HTTP (default 127.0.0.1:8080)")  # fmt: skip
    p.add_argument("--open", action="store_true", help="serve without API keys")
    p.add_argument("--open-on-network", action="store_true",
                   help="allow --open on an address that is not loopback")  # fmt: skip
    p.add_argument("--default-model", metavar="NAME", help="for requests that name no model")
    p.add_argument("--routes", type=Path, metavar="FILE",
                   help="a fixed YAML routing table instead of the hub (needs --open)")  # fmt: skip
    p.add_argument("--max-queue", type=positive, default=DEFAULT_MAX_QUEUE, metavar="N",
                   help="requests that may wait per loading model (default "
                   f"{DEFAULT_MAX_QUEUE})")  # fmt: skip
    p.add_argument("--max-body", type=positive, default=DEFAULT_MAX_BODY, metavar="BYTES",
                   help="largest request body (default 32 MiB)")  # fmt: skip
    p.add_argument("--log-level", choices=LEVELS, default="info")
    return p


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Flags over the config file (--config FILE, else /etc/gpufleet/gateway.yaml)."""
    return settings.parse_args(parser(), argv, settings.GATEWAY_CONFIG)


def loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check(args: argparse.Namespace) -> ServeOptions:
    try:
        host, port = split_address(args.listen)
    except ValueError as exc:
        fail(f"--listen {exc}: expected e.g. 127.0.0.1:8080")
    if port > 65535:
        fail(f"--listen port {port} is out of range")
    if args.routes is not None and args.hub is not None:
        fail("--routes and --hub exclude each other: a fixed table or the hub's")
    if args.routes is not None and not args.open:
        fail("--routes has no API keys: add --open to serve the fixed table without keys")
    if args.open and not loopback(host) and not args.open_on_network:
        fail(f"--open on {args.listen} would serve anyone on the network without a key: "
             "listen on 127.0.0.1, or add --open-on-network")  # fmt: skip
    settings = Settings(open=args.open, default_model=args.default_model, max_body=args.max_body)
    return ServeOptions(host=host, port=port, settings=settings, max_queue=args.max_queue)


def typed(argv: Sequence[str], option: str) -> bool:
    return any(arg == option or arg.startswith(f"{option}=") for arg in argv)


def read_token(args: argparse.Namespace, argv: Sequence[str]) -> str | None:
    """--token-file, else --token, else $GPUFLEET_JOIN_TOKEN, as for the agent; a --token
    typed on the command line beats a `token_file:` from the config file (flags win)."""
    if args.token_file and not (typed(argv, "--token") and not typed(argv, "--token-file")):
        try:
            text = Path(args.token_file).read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"cannot read --token-file {args.token_file}: "
                 f"{getattr(exc, 'strerror', None) or exc}")  # fmt: skip
        if not text:
            fail(f"--token-file {args.token_file} is empty")
        return text
    return args.token or os.environ.get(TOKEN_ENV, "").strip() or None


def connect(args: argparse.Namespace, argv: Sequence[str]) -> tuple[GatewayTls, GrpcHub]:
    """The hub link; enrolls first when the state dir holds no credential."""
    state_dir: Path = args.state_dir
    hub = resolve_hub(args.hub, state_dir, os.environ)
    try:
        split_address(hub)
    except ValueError as exc:
        fail(f"--hub {exc}: expected e.g. hub.example:7443")
    tls = GatewayTls(state_dir)
    if not tls.enrolled:
        token = read_token(args, argv)
        if token is None:
            fail(f"not enrolled yet: pass --token-file PATH or set ${TOKEN_ENV} with a "
                 "token from `hubctl tokens create --role gateway --name NAME` (or use "
                 "--routes)")  # fmt: skip
        name = args.name or socket.gethostname().split(".")[0]
        try:
            check_name(name)
        except ValueError:
            fail(f"invalid --name {name!r}: use letters, digits, '.', '_' and '-' (starting "
                 "and ending with a letter or digit)")  # fmt: skip
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            enroll(tls, state_dir, hub, token, name, args.enroll_port)
        except (EnrollError, ValueError) as exc:
            fail(str(exc))
        except OSError as exc:
            fail(f"cannot create --state-dir {state_dir}: {exc.strerror}")
        log.info("enrolled at %s as gateway %s", hub, name)
    try:
        name = tls.gateway_name()
    except NotEnrolled as exc:
        fail(str(exc))
    return tls, GrpcHub(lambda: tls.open_channel(hub), name)


async def run(options: ServeOptions, routes: Routes, link: tuple[GatewayTls, GrpcHub] | None
              ) -> None:  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    notify = sdnotify.Notifier.from_environment()

    def listening(url: str) -> None:
        print(f"gateway listening on {url}", file=sys.stderr, flush=True)
        notify.ready(f"listening on {url}")

    renew: asyncio.Task[None] | None = None
    if link is not None:
        tls, hub = link
        renew = asyncio.create_task(tls.keep_renewed(lambda: hub.open_channel(), stop))
    try:
        # WATCHDOG=1 from this loop while serving and draining; STOPPING=1 once `stop` is set.
        async with notify.serving(stop):
            await serve(options, routes, link[1] if link else None, stop, listening)
    finally:
        if renew is not None:
            renew.cancel()
        # Stopping is under way: a second SIGTERM (systemd's, a test's) while the interpreter
        # winds down must not kill it with the signal's default action.
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
            signal.signal(sig, signal.SIG_IGN)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    options = check(args)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    link = None
    if args.routes is not None:
        try:
            fixed = load_routes(args.routes)
        except RoutesFileError as exc:
            fail(str(exc))
        if args.default_model and fixed.lookup(args.default_model) is None:
            fail(f"--default-model {args.default_model!r} is not a model of {args.routes}")
        routes = Routes(fixed)
    else:
        routes = Routes()
        link = connect(args, argv)
    try:
        asyncio.run(run(options, routes, link))
    except ListenError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        pass
