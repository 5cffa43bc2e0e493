"""OpenAI-compatible gateway overhead: the same load, side by side in one run, against a fast
upstream directly, through gpufleet-gateway, and through LiteLLM's proxy (issue 16).

    scripts/litellm                                   # LiteLLM's proxy, in its own venv (once)
    python -m bench.gateway                           # 2000 requests at concurrency 16
    python -m bench.gateway --upstream-delay-ms 20    # an upstream that takes 20 ms to answer
    python -m bench.gateway --requests 60 --concurrency 4 --warmup 10    # smallest, ~30 s

The upstream (bench/loadgen/upstream.py) answers /v1/chat/completions at once (or after
--upstream-delay-ms): JSON, or Server-Sent Events of --chunks chunks. The gateway runs in its
static mode (`--routes FILE --open`: no hub), LiteLLM's proxy with a model_list entry
`openai/tiny` whose api_base is the upstream (no master key, as the gateway's open mode; no
telemetry, the local cost map, one worker). A load client in a process of its own
(bench/loadgen/client.py: aiohttp, keep-alive) sends the same requests to each target, not
streaming and then streaming, and checks every answer. Per target and mode: p50 and p99
latency, requests/s, the proxy's CPU per request, and the latency ratios to direct. Goals:
the gateway's p50 within 1.05x of direct, and its overhead below LiteLLM's.

`--cold-start` also measures, after the comparison, the time from a request for a stopped
llama.cpp model to its first token, through a real hub, agent and gateway, split into the
model's start and its first token (bench/gateway_cold.py; llama-cpp-python installed).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.common import free_port, proc_stats, spawn, stop, unwind_on_sigterm, wait

MODEL = "tiny"
LITELLM_VENV = Path(os.environ.get("GPUFLEET_LITELLM_VENV", "~/.cache/gpufleet/litellm"))
# What LiteLLM's proxy does not need here: fetching the model cost map and other files from
# GitHub at start-up, reading a .env, verbose logs. Its usage telemetry is off unless set.
LITELLM_ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOCAL_BLOG_POSTS": "true",
               "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "true", "LITELLM_MODE": "PRODUCTION",
               "LITELLM_LOCAL_AUTOROUTER_PRESETS": "true", "LITELLM_LOG": "ERROR"}  # fmt: skip
LITELLM_CONFIG = """\
model_list:
  - model_name: {model}
    litellm_params: {{model: openai/{model}, api_base: "{upstream}/v1", api_key: dummy}}
litellm_settings: {{telemetry: false, drop_params: true}}
general_settings: {{dangerously_permit_weak_or_unset_master_key: true}}
"""
ROUTES = """\
models:
  - {{name: {model}, aliases: [], served_model_name: {model}, endpoints: ["{upstream}"]}}
"""


@dataclass(frozen=True)
class Figures:
    p50_ms: float
    p99_ms: float
    per_s: float
    cpu_ms: float | None  # the proxy's CPU per request; None for direct


Target = tuple[subprocess.Popen[str], str]  # a process and the base URL it serves


def litellm_command(given: Path | None) -> Path:
    found = given or LITELLM_VENV.expanduser() / "bin" / "litellm"
    if not os.access(found, os.X_OK):
        raise SystemExit(f"LiteLLM's proxy is missing ({found}): run scripts/litellm "
                         "(it installs litellm[proxy] into a venv of its own)")  # fmt: skip
    return found


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def start_litellm(work: Path, command: Path, upstream: str) -> Target:
    config, port = work / "litellm.yaml", free_port()
    config.write_text(LITELLM_CONFIG.format(model=MODEL, upstream=upstream))
    with (work / "litellm.log").open("w") as log:
        process = subprocess.Popen(
            [str(command), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
             "--num_workers", "1"], cwd=work, env={**os.environ, **LITELLM_ENV},
            stdout=log, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    return process, f"http://127.0.0.1:{port}"


def start_all(work: Path, args: argparse.Namespace, litellm: Path,
              targets: dict[str, Target]) -> None:  # fmt: skip
    """The upstream ("direct"), the gateway and LiteLLM's proxy, into `targets` (process, base
    URL) as each starts, so that the caller stops whatever started when one fails."""
    port = free_port()
    upstream = f"http://127.0.0.1:{port}"
    targets["direct"] = (spawn(["-m", "bench.loadgen.upstream", "--port", str(port),
                                "--delay-ms", str(args.upstream_delay_ms), "--chunks",
                                str(args.chunks)], work / "upstream.log"), upstream)  # fmt: skip
    routes, gport = work / "routes.yaml", free_port()
    routes.write_text(ROUTES.format(model=MODEL, upstream=upstream))
    targets["gateway"] = (spawn(["-m", "gateway", "--routes", str(routes), "--open",
                                 "--listen", f"127.0.0.1:{gport}"], work / "gateway.log"),
                          f"http://127.0.0.1:{gport}")  # fmt: skip
    targets["litellm"] = start_litellm(work, litellm, upstream)


def wait_ready(targets: dict[str, Target], work: Path) -> None:
    probes = {"direct": "/v1/models", "gateway": "/healthz", "litellm": "/health/liveliness"}
    for name, (process, url) in targets.items():
        try:
            wait(functools.partial(answers, url + probes[name]), 120, process)
        except SystemExit as exc:  # `spawn` logs the others: `wait` shows their log's end
            log = (work / "litellm.log").read_text() if name == "litellm" else ""
            raise SystemExit(f"{name} did not start serving: {exc}\n{log[-3000:]}") from None


def measure(process: subprocess.Popen[str] | None, url: str, stream: bool,
            args: argparse.Namespace) -> Figures:  # fmt: skip
    before = proc_stats(process.pid)[1] if process else 0.0
    load = subprocess.run(
        [sys.executable, "-m", "bench.loadgen.client", "--url", url, "--model", MODEL,
         "--requests", str(args.requests), "--concurrency", str(args.concurrency),
         "--warmup", str(args.warmup), "--chunks", str(args.chunks),
         *(["--stream"] if stream else [])],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if load.returncode != 0:
        raise SystemExit(f"the load client failed against {url}:\n{load.stderr[-3000:]}")
    found = json.loads(load.stdout)
    if found["failed"]:
        raise SystemExit(f"{url}: {found['failed']} of {args.requests} requests failed, e.g. "
                         f"{'; '.join(found['errors'])}")  # fmt: skip
    cpu = (proc_stats(process.pid)[1] - before) * 1000 if process else None
    latencies = sorted(found["latencies_ms"])
    p99 = latencies[min(len(latencies) - 1, len(latencies) * 99 // 100)]
    return Figures(latencies[len(latencies) // 2], p99, len(latencies) / found["seconds"],
                   None if cpu is None else cpu / (args.requests + args.warmup))  # fmt: skip


def report(mode: str, rows: dict[str, Figures]) -> None:
    direct = rows["direct"]
    for name, row in rows.items():
        cpu = "" if row.cpu_ms is None else f"  cpu {row.cpu_ms:.2f} ms/req"
        print(f"{mode:<14} {name:<8} p50 {row.p50_ms:7.2f} ms  p99 {row.p99_ms:7.2f} ms  "
              f"{row.per_s:7.0f} req/s  p50 x{row.p50_ms / direct.p50_ms:.2f}  "
              f"p99 x{row.p99_ms / direct.p99_ms:.2f}{cpu}")  # fmt: skip


def goals(results: dict[str, dict[str, Figures]]) -> None:
    ratios = {
        mode: rows["gateway"].p50_ms / rows["direct"].p50_ms for mode, rows in results.items()
    }
    met = all(ratio <= 1.05 for ratio in ratios.values())
    said = ", ".join(f"{mode} x{ratio:.2f}" for mode, ratio in ratios.items())
    print(f"goal: gateway p50 within 1.05x of direct: {said}: {'met' if met else 'missed'}")
    over = {mode: (rows["gateway"].p50_ms - rows["direct"].p50_ms,
                   rows["litellm"].p50_ms - rows["direct"].p50_ms)
            for mode, rows in results.items()}  # fmt: skip
    met = all(ours < theirs for ours, theirs in over.values())
    said = ", ".join(
        f"{mode} {ours:.2f} ms vs {theirs:.2f} ms" for mode, (ours, theirs) in over.items()
    )
    print(f"goal: gateway p50 overhead below LiteLLM's: {said}: {'met' if met else 'missed'}")


def overhead(args: argparse.Namespace) -> None:
    litellm = litellm_command(args.litellm)
    unwind_on_sigterm()
    with tempfile.TemporaryDirectory(prefix="gpufleet-bench-gateway-") as tmp:
        work = Path(tmp)
        targets: dict[str, Target] = {}
        try:
            start_all(work, args, litellm, targets)
            wait_ready(targets, work)
            results: dict[str, dict[str, Figures]] = {}
            for mode, stream in (("non-streaming", False), ("streaming", True)):
                results[mode] = {
                    name: measure(None if name == "direct" else process, url, stream, args)
                    for name, (process, url) in targets.items()
                }
        finally:
            stop(*(process for process, _ in reversed(targets.values())))
    print(f"upstream       fast OpenAI-shaped, {args.chunks} chunks per stream, "
          f"{args.upstream_delay_ms:g} ms before answering")  # fmt: skip
    print(f"load           {args.requests} requests at concurrency {args.concurrency} after "
          f"{args.warmup} warm-up, one keep-alive client process")  # fmt: skip
    for mode, rows in results.items():
        report(mode, rows)
    goals(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="timed, per target and mode")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=200, help="untimed requests first")
    parser.add_argument("--chunks", type=int, default=8, help="chunks per streamed answer")
    parser.add_argument("--upstream-delay-ms", type=float, default=0.0)
    parser.add_argument("--litellm", type=Path, help="the litellm command (default: "
                        "scripts/litellm's, ~/.cache/gpufleet/litellm/bin/litellm)")  # fmt: skip
    parser.add_argument("--cold-start", action="store_true",
                        help="then scale from zero through hub, agent and gateway")  # fmt: skip
    parser.add_argument("--cold-runs", type=int, default=3, help="with --cold-start")
    args = parser.parse_args()
    if args.requests < 1 or args.concurrency < 1 or args.warmup < 0 or args.chunks < 1:
        raise SystemExit("--requests, --concurrency and --chunks must be at least 1, "
                         "--warmup at least 0")  # fmt: skip
    overhead(args)
    if args.cold_start:
        from bench.gateway_cold import cold_start

        cold_start(max(args.cold_runs, 1))


if __name__ == "__main__":
    main()
