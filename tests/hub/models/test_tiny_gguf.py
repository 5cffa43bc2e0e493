"""The tests' tiny random-weight GGUF (tests/support/tiny_gguf.py) is a real model: llama.cpp
loads it and chats in well under a second on a CPU, llama-cpp-python's server lists and
answers it, and the hub's own GGUF header reader and VRAM estimate read it."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hub.models import gguf as header_reader
from hub.models.estimate import GIB, DiskSizes, estimate
from hub.models.load import parse_models
from tests.conftest import need
from tests.support.procs import free_port, wait_until

MISSING = "pip install -e '.[llama]'"


def _require(*modules: str) -> None:
    absent = [name for name in modules if importlib.util.find_spec(name) is None]
    if absent:
        need(f"{' and '.join(absent)} missing: {MISSING}")


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    _require("gguf")
    from tests.support.tiny_gguf import write_tiny_gguf

    return write_tiny_gguf(tmp_path / "tiny.gguf")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_arguments_write_the_same_bytes_another_seed_or_name_another_file(
    tmp_path: Path, model_file: Path
) -> None:
    from tests.support.tiny_gguf import write_tiny_gguf

    again = write_tiny_gguf(tmp_path / "again.gguf")
    other_seed = write_tiny_gguf(tmp_path / "seed.gguf", seed=1)
    other_name = write_tiny_gguf(tmp_path / "name.gguf", name="tiny-b")
    assert digest(again) == digest(model_file)
    assert len({digest(model_file), digest(other_seed), digest(other_name)}) == 3
    assert 200_000 < model_file.stat().st_size < 1_000_000


def test_the_hubs_header_reader_and_estimate_read_it(model_file: Path) -> None:
    with model_file.open("rb") as stream:
        header = header_reader.read_header(stream)
    meta = header.metadata
    assert (meta["general.architecture"], meta["general.name"]) == ("llama", "tiny")
    assert (meta["llama.block_count"], meta["llama.embedding_length"]) == (2, 64)
    assert meta["tokenizer.ggml.model"] == "llama"
    tokens = meta["tokenizer.ggml.tokens"]
    assert tokens[:3] == ["<unk>", "<s>", "</s>"] and "<0xFF>" in tokens
    assert len(tokens) == meta["llama.vocab_size"] == len(meta["tokenizer.ggml.token_type"])
    assert "<|im_start|>" in meta["tokenizer.chat_template"]
    tensors = header.tensor_bytes()
    assert tensors is not None and 0 < tensors < model_file.stat().st_size
    # f16 K and V, 2 layers x 4 heads x (16 + 16) values per token
    assert header_reader.kv_cache_bytes(header, 256) == 256 * 2 * 4 * 32 * 2

    [model] = parse_models(
        f"name: tiny\nengine: llama-cpp\nsource: {{path: {model_file}}}\n"
        "llama_cpp: {n_ctx: 256, backend: cuda}\n",
        Path("tiny.yaml"),
    )
    found = estimate(model, DiskSizes())
    assert found.vram_gb is not None and 0 < found.vram_gb <= 0.1, found
    assert found.basis.startswith(f"tensors {tensors / GIB:.2f} GiB + KV cache for 256 tokens")


def test_llama_cpp_loads_it_and_chats(model_file: Path) -> None:
    """Its speed (milliseconds per request) is for bench/model_switch.py to show, not a test."""
    _require("llama_cpp")
    from llama_cpp import Llama

    llm = Llama(model_path=str(model_file), n_ctx=256, verbose=False)
    reply: Any = llm.create_chat_completion(
        messages=[{"role": "user", "content": "hello tiny model"}], max_tokens=8
    )
    [choice] = reply["choices"]
    assert choice["message"]["role"] == "assistant"
    assert reply["usage"]["completion_tokens"] <= 8


def call(url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


@pytest.fixture
def server(tmp_path: Path, model_file: Path) -> Iterator[str]:
    _require("llama_cpp")
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", f"--model={model_file}",
             "--model_alias=tiny", f"--port={port}", "--n_ctx=256"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def listening() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}:\n"
                                 f"{log.read_text()[-3000:]}")  # fmt: skip
        try:
            return call(f"{url}/v1/models")[0] == 200
        except OSError:
            return False

    try:
        wait_until(listening, 60, "python -m llama_cpp.server to answer /v1/models")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_the_llama_cpp_server_lists_it_and_answers_a_chat(server: str) -> None:
    status, listed = call(f"{server}/v1/models")
    assert status == 200 and [entry["id"] for entry in listed["data"]] == ["tiny"]
    status, reply = call(f"{server}/v1/chat/completions", {
        "model": "tiny", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8,
    })  # fmt: skip
    assert status == 200, reply
    [choice] = reply["choices"]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] in (
        "stop", "length"
    )  # fmt: skip
