"""A stand-in vLLM server image for the tests: the endpoints a model switch relies on, from
busybox alone (no Python, no model), built locally by the demo image's builder.

`localhost/gpufleet-vllm-standin:latest` runs /bin/vllm-standin as its ENTRYPOINT, so a
compose service's `command:` is vLLM's server arguments, exactly as `hub.models.vllm.args`
generates them (the arguments after `vllm serve`: --model=..., --served-model-name=NAME,
--port=P, ...; `--flag value` pairs and a positional model are read too). It serves HTTP on
--port (default 8000) with `busybox nc -ll -e`, one handler process per connection:

    GET /health         503 until $LOAD_DELAY seconds (default 1) after start, then 200
    GET /v1/models      OpenAI model list naming the served model name (503 until loaded)
    GET /metrics        Prometheus text: vllm:num_requests_running{model_name=...} N
    GET /cmdline        the server's arguments, one per line (always)
    GET /work?seconds=N "works" N seconds (default 5, at most 600), counted in the metric

Every answer is HTTP/1.1 with Content-Length and `Connection: close`. SIGTERM stops it at
once.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable

from cli import demo_image
from tests.support import podman

IMAGE = "localhost/gpufleet-vllm-standin:latest"
ENTRYPOINT = "/bin/vllm-standin"

SERVE = r"""#!/bin/sh
# The vLLM stand-in's ENTRYPOINT (set by tests/support/vllm_standin.py, version 1): vLLM's
# server arguments in, HTTP on --port out.
port=8000
model=
served=
expect=
: > /tmp/cmdline
for arg in "$@"; do
  printf '%s\n' "$arg" >> /tmp/cmdline
  case "$expect" in
    port) port=$arg; expect=; continue ;;
    served) served=$arg; expect=; continue ;;
    model) model=$arg; expect=; continue ;;
  esac
  case "$arg" in
    --port=*) port=${arg#*=} ;;
    --port) expect=port ;;
    --served-model-name=*) served=${arg#*=} ;;
    --served-model-name) expect=served ;;
    --model=*) model=${arg#*=} ;;
    --model) expect=model ;;
    -*) ;;
    *) [ -n "$model" ] || model=$arg ;;
  esac
done
printf '%s\n' "${model:-stand-in}" > /tmp/model
printf '%s\n' "${served:-${model:-stand-in}}" > /tmp/served
rm -f /tmp/loaded
mkdir -p /tmp/inflight
( sleep "${LOAD_DELAY:-1}" && touch /tmp/loaded ) &
nc -ll -p "$port" -e /bin/vllm-handler &
server=$!
trap 'kill $server 2>/dev/null; exit 0' TERM INT
echo "vllm stand-in: serving $(cat /tmp/served) on port $port, loaded in ${LOAD_DELAY:-1} s"
wait $server
"""

HANDLER = r"""#!/bin/sh
# One HTTP request on stdin, its answer on stdout (nc -ll -e runs this per connection).
cr=$(printf '\r')
read -r method target _
while IFS= read -r line; do
  line=${line%"$cr"}
  [ -z "$line" ] && break
done
path=${target%%\?*}
query=
case "$target" in *\?*) query=${target#*\?} ;; esac
body=/tmp/answer.$$
trap 'rm -f $body /tmp/inflight/$$' EXIT
name=$(sed 's/[\\"]/\\&/g' /tmp/served)
root=$(sed 's/[\\"]/\\&/g' /tmp/model)
answer() {
  printf 'HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %s\r\n' "$1" "$2" \
    "$(wc -c < $body)"
  printf 'Cache-Control: no-store\r\nConnection: close\r\n\r\n'
  cat $body
  exit 0
}
loading() {
  printf '{"object":"error","message":"loading %s"}\n' "$name" > $body
  answer '503 Service Unavailable' application/json
}
case "$method $path" in
  "GET /health")
    [ -f /tmp/loaded ] || loading
    : > $body
    answer '200 OK' text/plain ;;
  "GET /v1/models")
    [ -f /tmp/loaded ] || loading
    printf '{"object":"list","data":[{"id":"%s","object":"model","created":0,' "$name" > $body
    printf '"owned_by":"vllm","root":"%s","parent":null}]}\n' "$root" >> $body
    answer '200 OK' application/json ;;
  "GET /metrics")
    {
      echo '# HELP vllm:num_requests_running Number of requests in model execution batches.'
      echo '# TYPE vllm:num_requests_running gauge'
      echo "vllm:num_requests_running{model_name=\"$name\"} $(ls /tmp/inflight | wc -l)"
    } > $body
    answer '200 OK' 'text/plain; version=0.0.4' ;;
  "GET /cmdline")
    cat /tmp/cmdline > $body
    answer '200 OK' text/plain ;;
  "GET /work")
    seconds=$(echo "$query" | sed -n 's/.*seconds=\([0-9]*\).*/\1/p')
    seconds=${seconds:-5}
    [ "$seconds" -le 600 ] || seconds=600
    touch /tmp/inflight/$$
    sleep "$seconds"
    rm -f /tmp/inflight/$$
    echo "worked $seconds s" > $body
    answer '200 OK' text/plain ;;
esac
echo "no $method $path here: /health, /v1/models, /metrics, /cmdline, /work" > $body
answer '404 Not Found' text/plain
"""

STANDIN = demo_image.ImageSpec(
    IMAGE,
    {
        "bin/vllm-standin": (0o755, SERVE),
        "bin/vllm-handler": (0o755, HANDLER),
        "etc/passwd": (0o644, "root:x:0:0:root:/:/bin/sh\n"),
        "etc/group": (0o644, "root:x:0:\n"),
    },
    ENTRYPOINT,
    "the vLLM stand-in image",
    entrypoint=True,
)

Run = Callable[[list[str]], subprocess.CompletedProcess[str]]


def _default_run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return podman.podman(*argv, check=False)


def build(run: Run = _default_run) -> str:
    """Import the image (about half a second) unless the one there is current; its name.
    podman.PodmanMissing, one line naming the package, when it cannot be built."""
    try:
        demo_image.ensure_image(run, lambda _: None, STANDIN)
    except demo_image.DemoUnavailable as exc:
        raise podman.PodmanMissing(str(exc)) from None
    return IMAGE
