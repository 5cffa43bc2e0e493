"""A model definition's `gateway:` section (issue 16): read and checked like every other field
(one line per problem, naming the field and the fix), written back by as_dict, defaults by
engine, and left out of the digest (models without it keep the digest they had)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from hub.models.load import ModelError, parse_models
from hub.models.schema import GatewayParams, Model, as_dict

WHERE = Path("models/chat.yaml")
VLLM: dict[str, Any] = {
    "name": "chat",
    "engine": "vllm",
    "source": {"hf": {"repo": "Qwen/Qwen3-8B", "revision": "main"}},
    "vllm": {"max_model_len": 32768, "enable_auto_tool_choice": True, "tool_call_parser": "hermes"},
    "aliases": ["qwen3"],
}
LLAMA: dict[str, Any] = {
    "name": "tiny",
    "engine": "llama-cpp",
    "source": {"path": "/m/tiny.gguf"},
    "llama_cpp": {"backend": "cpu", "n_ctx": 256},
}
# The digests these definitions had before the gateway section existed (commit c57fac3).
DIGESTS = {
    "chat": "450a6153231acd44b69fc65abd03e292fc098618125dc6bcfd232f019d3ca397",
    "tiny": "09a1f52c2bd5035465b0bd6456570b7268e8f328e791d85c5487993cd6f06388",
}


def parse(data: dict[str, Any]) -> Model:
    return parse_models(yaml.safe_dump(data, sort_keys=False), WHERE)[0]


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ModelError) as caught:
        parse(data)
    prefix = f"{WHERE}: "
    assert all(line.startswith(prefix) for line in caught.value.problems)
    return [line[len(prefix) :] for line in caught.value.problems]


def test_without_the_section_nothing_changes() -> None:
    for data in (VLLM, LLAMA):
        model = parse(data)
        assert model.gateway == GatewayParams()
        assert "gateway" not in as_dict(model)
        assert model.digest == DIGESTS[model.name]


def test_defaults_by_engine() -> None:
    vllm, llama = parse(VLLM), parse(LLAMA)
    assert vllm.gateway.load_timeout_s(vllm.engine) == 600
    assert llama.gateway.load_timeout_s(llama.engine) == 300
    assert vllm.gateway.idle_ttl is None and vllm.gateway.node is None
    assert vllm.gateway.port == 8000


def test_the_section_is_read_written_back_and_left_out_of_the_digest() -> None:
    section = {"idle_ttl": 900, "load_timeout": 120.5, "node": "gpu-a.lab", "port": 8123}
    model = parse({**LLAMA, "gateway": section})
    assert model.gateway == GatewayParams(900.0, 120.5, "gpu-a.lab", 8123)
    assert model.gateway.load_timeout_s("llama-cpp") == 120.5
    assert as_dict(model)["gateway"] == section
    assert parse(as_dict(model)) == model  # the YAML form reads back to the same model
    assert model.digest == DIGESTS["tiny"]  # how the gateway treats it is not its server


def test_the_default_port_is_not_written_back() -> None:
    model = parse({**VLLM, "gateway": {"idle_ttl": 60, "port": 8000}})
    assert as_dict(model)["gateway"] == {"idle_ttl": 60}
    assert isinstance(as_dict(model)["gateway"]["idle_ttl"], int)  # written as 60, not 60.0
    assert "gateway" not in as_dict(parse({**VLLM, "gateway": {}}))


@pytest.mark.parametrize(
    ("section", "line"),
    [
        ({"idle_ttl": 0}, "gateway.idle_ttl: must be a number > 0 and <= 604800, got 0"),
        ({"idle_ttl": "5m"}, "gateway.idle_ttl: must be a number > 0 and <= 604800, got '5m'"),
        ({"load_timeout": -1}, "gateway.load_timeout: must be a number > 0"),
        ({"load_timeout": True}, "gateway.load_timeout: must be a number > 0"),
        ({"port": 0}, "gateway.port: must be a whole number from 1 to 65535, got 0"),
        ({"port": 70000}, "gateway.port: must be a whole number from 1 to 65535, got 70000"),
        ({"node": "-bad"}, "gateway.node: must be a node's name (`hubctl nodes` lists them)"),
        ({"node": ""}, "gateway.node: must be a node's name"),
        ({"idle": 60}, "gateway.idle: unknown key (did you mean 'idle_ttl'?)"),
        ({"gpus": [0]}, "gateway.gpus: is an infrastructure parameter"),
    ],
)
def test_bad_values_are_one_line_each(section: dict[str, Any], line: str) -> None:
    found = problems({**VLLM, "gateway": section})
    assert len(found) == 1, found
    assert found[0].startswith(line), found


def test_not_a_mapping_and_every_problem_at_once() -> None:
    assert problems({**VLLM, "gateway": 5})[0].startswith("gateway: must be a mapping with")
    found = problems({**VLLM, "gateway": {"idle_ttl": -1, "port": "x", "node": 3}})
    assert [line.split(":")[0] for line in found] == [
        "gateway.idle_ttl", "gateway.node", "gateway.port",
    ]  # fmt: skip
