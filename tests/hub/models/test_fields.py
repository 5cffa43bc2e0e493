"""Model definitions: the shipped examples load, and each kind of bad input is refused with
one line naming the file, the field and the fix; every problem of a file is reported."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.models.load import ModelError, find, load_directory, load_file, parse_models
from hub.models.schema import GgufSource, HfSource, Model, PathSource, as_dict

MODELS = Path(__file__).resolve().parents[3] / "configs" / "models"
WHERE = Path("models/chat.yaml")
BASE: dict[str, Any] = {
    "name": "chat",
    "engine": "vllm",
    "source": {"hf": {"repo": "Qwen/Qwen3-8B", "revision": "main"}},
    "vllm": {"max_model_len": 32768, "enable_auto_tool_choice": True, "tool_call_parser": "hermes"},
    "aliases": ["qwen3"],
}


def parse(data: Any, where: Path = WHERE) -> tuple[Model, ...]:
    return parse_models(yaml.safe_dump(data, sort_keys=False), where)


def problems(data: Any) -> list[str]:
    with pytest.raises(ModelError) as caught:
        parse(data)
    return list(caught.value.problems)


def changed(path: str, value: Any) -> dict[str, Any]:
    """BASE with the dotted `path` set to value (or removed when value is ...)."""
    data = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return data


def test_the_shipped_examples_load() -> None:
    models, errors = load_directory(MODELS)
    assert errors == []
    assert set(models) == {"llama31-8b-instruct", "deepseek-r1-distill-qwen-32b",
                           "qwen3-8b-gguf", "qwen3-coder-30b-fp8"}  # fmt: skip
    engines = {model.engine for model in models.values()}
    assert engines == {"vllm", "llama-cpp"}
    gguf = models["qwen3-8b-gguf"]
    assert gguf.source == GgufSource("Qwen/Qwen3-8B-GGUF", "Qwen3-8B-Q4_K_M.gguf")
    assert gguf.llama_cpp is not None and gguf.llama_cpp.n_ctx == 8192
    assert gguf.health_path == "/v1/models" and gguf.drain_metric is None
    reasoning = models["deepseek-r1-distill-qwen-32b"]
    assert reasoning.vllm is not None and reasoning.vllm.reasoning_parser == "deepseek_r1"


def test_a_valid_model_reads_with_defaults() -> None:
    (model,) = parse(BASE)
    assert model.name == "chat" and model.served_model_name == "chat"
    assert model.source == HfSource("Qwen/Qwen3-8B", "main")
    assert model.health_path == "/health" and model.drain_metric == "vllm:num_requests_running"
    assert model.ids == ("chat", "qwen3") and model.file == str(WHERE)
    assert len(model.digest) == 64
    assert parse(as_dict(model))[0] == model  # the YAML form reads back to the same model


def test_the_digest_follows_the_definition_not_the_comments() -> None:
    (model,) = parse(BASE)
    text = "# a comment\n" + yaml.safe_dump(BASE)
    assert parse_models(text, WHERE)[0].digest == model.digest
    assert parse(changed("vllm.max_model_len", 16384))[0].digest != model.digest


def test_the_engine_defaults_from_the_source() -> None:
    data = {"source": {"gguf": {"repo": "Qwen/Qwen3-8B-GGUF", "file": "q4.gguf"}}}
    (model,) = parse(data)
    assert model.name == "chat" and model.engine == "llama-cpp"  # the name from the file
    assert model.llama_cpp is not None and model.llama_cpp.backend == "cuda"
    (local,) = parse({"source": {"path": "/models/qwen"}})
    assert local.engine == "vllm" and local.source == PathSource("/models/qwen")


BAD = [
    (changed("name", "Chat_1"), "name: 'Chat_1' is not a valid name: use a DNS label as the model "
     "name: 1 to 63 lowercase letters, digits or '-', starting and ending with a letter or digit, "
     "e.g. 'chat-1'"),
    (changed("engine", "vlm"), "engine: must be vllm | llama-cpp, got 'vlm' (did you mean "
     "'vllm'?)"),
    (changed("source", ...), "source: is required: add source: {hf: {repo: Org/Model}}, "
     "{gguf: {repo, file}} or {path: /dir}"),
    (changed("source.path", "/m"), "source: must have exactly one of hf, gguf, path, registry, "
     "got hf and path"),
    (changed("source", {"path": "models/x"}), "source.path: must be an absolute path on the host, "
     "e.g. /models/qwen3-8b, got 'models/x'"),
    (changed("source.hf.repo", "not a repo"), "source.hf.repo: must be a Hugging Face repository "
     "id such as Org/Model, got 'not a repo'"),
    (changed("source", {"gguf": {"repo": "a/b", "file": "x.gguf"}}), "source.gguf: vLLM reads a "
     "GGUF only from a local file: use source: {path: /dir/model.gguf}, or engine: llama-cpp"),
    (changed("vllm.max_model_len", 0), "vllm.max_model_len: must be a whole number >= 1, got 0"),
    (changed("vllm.max_model_len", "32k"), "vllm.max_model_len: must be a whole number >= 1, "
     "got '32k'"),
    (changed("vllm.gpu_memory_utilization", 90), "vllm.gpu_memory_utilization: must be a number "
     "> 0 and <= 1, got 90 (a fraction: 0.9 is 90%)"),
    (changed("vllm.gpu_memory_utilization", 0), "vllm.gpu_memory_utilization: must be a number "
     "> 0 and <= 1, got 0 (a fraction: 0.9 is 90%)"),
    (changed("vllm.enable_prefix_caching", "yes"), "vllm.enable_prefix_caching: must be true or "
     "false, got 'yes'"),
    (changed("vllm.dtype", "bf16"), "vllm.dtype: must be auto | half | float16 | bfloat16 | float "
     "| float32, got 'bf16' (did you mean 'bfloat16'?)"),
    (changed("vllm.tool_call_parser", ...), "vllm.enable_auto_tool_choice: needs "
     "vllm.tool_call_parser (vLLM refuses --enable-auto-tool-choice without --tool-call-parser): "
     "add vllm.tool_call_parser, e.g. hermes, or remove it"),
    (changed("vllm.max_num_seqs", 256) | {"vllm": {**BASE["vllm"], "max_num_seqs": 256,
     "max_num_batched_tokens": 128}}, "vllm.max_num_batched_tokens: must be at least "
     "vllm.max_num_seqs (256), got 128: vLLM refuses less"),
    (changed("vllm.max_model_len_", 1), "vllm.max_model_len_: unknown key (did you mean "
     "'max_model_len'?); allowed: max_model_len, gpu_memory_utilization, max_num_seqs, "
     "max_num_batched_tokens, enable_chunked_prefill, enable_prefix_caching, "
     "enable_auto_tool_choice, tool_call_parser, reasoning_parser, dtype, "
     "disable_custom_all_reduce, extra_args, env, image"),
    (changed("vllm.maxNumSeqs", 8), "vllm.maxNumSeqs: unknown key (did you mean 'max_num_seqs'?); "
     "allowed: max_model_len, gpu_memory_utilization, max_num_seqs, max_num_batched_tokens, "
     "enable_chunked_prefill, enable_prefix_caching, enable_auto_tool_choice, tool_call_parser, "
     "reasoning_parser, dtype, disable_custom_all_reduce, extra_args, env, image"),
    (changed("vllm.image", "no spaces allowed"), "vllm.image: must be an image such as "
     "vllm/vllm-openai:v0.10.0, got 'no spaces allowed'"),
    (changed("vllm.n_ctx", 8192), "vllm.n_ctx: is a llama.cpp parameter: this model's engine is "
     "vllm"),
    (changed("max_model_len", 8192), "max_model_len: is a vLLM parameter: put it under vllm:"),
    (changed("llama_cpp", {"n_ctx": 8}), "llama_cpp: is for engine llama-cpp, and this model's "
     "engine is vllm: remove it or set engine: llama-cpp"),
    (changed("vllm.extra_args", ["--max-model-len=4096"]), "vllm.extra_args[0]: --max-model-len "
     "is the field vllm.max_model_len: set that instead"),
    (changed("vllm.extra_args", ["--port", "9000"]), "vllm.extra_args[0]: --port is written by "
     "gpufleet from the model and its deployment: remove it"),
    (changed("vllm.env", {"CUDA_VISIBLE_DEVICES": "0"}), "vllm.env.CUDA_VISIBLE_DEVICES: chooses "
     "GPUs, which is the deployment's part: give the GPUs where it is deployed"),
    (changed("vllm.env", {"VLLM_FLAG": True}), "vllm.env.VLLM_FLAG: must be text or a number "
     "(quote true/false: 'true'), got True"),
    (changed("vram_gb", 0), "vram_gb: must be a number > 0 and <= 10000, got 0"),
    (changed("health_path", "health"), "health_path: must be a URL path starting with /, e.g. "
     "/health, got 'health'"),
    (changed("drain_metric", "num requests"), "drain_metric: must be a Prometheus metric name "
     "such as vllm:num_requests_running, or none, got 'num requests'"),
    (changed("aliases", ["chat"]), "aliases[0]: 'chat' is listed twice (or is the name): "
     "remove it"),
    (changed("aliases", "qwen3"), "aliases: must be a list of names (at most 100), got 'qwen3'"),
]  # fmt: skip


@pytest.mark.parametrize(("data", "line"), BAD, ids=[line.split(":")[0] for _, line in BAD])
def test_each_bad_field_is_one_line_naming_file_field_and_fix(data: Any, line: str) -> None:
    assert problems(data) == [f"{WHERE}: {line}"]


INFRA = (
    "is an infrastructure parameter, not the model's: give it where the model is deployed (the "
    "node and GPUs it runs on), not in the model file"
)


@pytest.mark.parametrize("where", ["tensor_parallel_size", "gpu_count", "cpu_offload_gb",
                                   "vllm.tensor_parallel_size", "vllm.cpu_offload_gb"])  # fmt: skip
def test_infrastructure_parameters_are_refused_with_where_they_belong(where: str) -> None:
    assert problems(changed(where, 2)) == [f"{WHERE}: {where}: {INFRA}"]


def test_an_infrastructure_flag_in_extra_args_is_refused_too() -> None:
    line = f"{WHERE}: vllm.extra_args[1]: --tensor-parallel-size {INFRA}"
    data = changed("vllm.extra_args", ["--kv-cache-dtype=fp8", "--tensor-parallel-size=2"])
    assert problems(data) == [line]


def test_llama_cpp_fields() -> None:
    base = {"source": {"path": "/m/x.gguf"}}
    cpu = base | {"llama_cpp": {"backend": "cpu", "n_gpu_layers": 10}}
    assert problems(cpu) == [f"{WHERE}: llama_cpp.n_gpu_layers: must be 0 or left out with "
                             "backend cpu: remove it"]  # fmt: skip
    wrong = base | {"llama_cpp": {"backend": "cuda12", "n_ctx": -1, "max_model_len": 5}}
    assert problems(wrong) == [
        f"{WHERE}: llama_cpp.max_model_len: is a vLLM parameter: this model's engine is llama-cpp",
        f"{WHERE}: llama_cpp.n_ctx: must be a whole number >= 0, got -1",
        f"{WHERE}: llama_cpp.backend: must be cuda | vulkan | rocm | cpu, got 'cuda12' (did you "
        "mean 'cuda'?)",
    ]
    assert problems(base | {"drain_metric": "x"}) == [
        f"{WHERE}: drain_metric: llama-cpp-python's server has no /metrics: remove it"
    ]
    assert problems({"source": {"hf": {"repo": "a/b"}}, "engine": "llama-cpp"}) == [
        f"{WHERE}: source.hf: llama.cpp needs a GGUF file: use source: {{gguf: {{repo, file}}}} "
        "or {path: /dir/model.gguf}, or engine: vllm"
    ]
    (cpu_model,) = parse(base | {"llama_cpp": {"backend": "cpu"}, "vram_gb": 0})
    assert cpu_model.vram_gb == 0.0  # no GPU needed
    loading = base | {"llama_cpp": {"env": {"LD_PRELOAD": "/x.so", "GGML_SCHED": "1"}}}
    assert problems(loading) == [
        f"{WHERE}: llama_cpp.env.LD_PRELOAD: is refused for a llama.cpp server, which runs on the "
        "host (it could load code from a path): set it in the agent's own environment on the "
        "hosts that need it"
    ]


def test_every_problem_of_a_file_is_reported_in_one_round() -> None:
    data = copy.deepcopy(BASE)
    data["name"] = "Bad Name"
    data["vllm"] = {"max_model_len": -1, "dtype": "fp9", "enable_auto_tool_choice": True}
    data["gpu_count"] = 2
    data["vram_gb"] = "lots"
    found = problems(data)
    assert len(found) == 6, found
    assert all(line.startswith(f"{WHERE}: ") for line in found)
    assert [line.split(": ")[1] for line in found] == [
        "gpu_count", "name", "vllm.max_model_len", "vllm.dtype", "vllm.enable_auto_tool_choice",
        "vram_gb"]  # fmt: skip


def test_a_file_that_is_not_a_model() -> None:
    assert problems(["a", "list"]) == [f"{WHERE}: must be a model definition (a mapping with "
                                       "name, source and engine), got a list"]  # fmt: skip
    with pytest.raises(ModelError, match="holds no model"):
        parse_models("# nothing\n", WHERE)
    with pytest.raises(ModelError, match=r"invalid YAML at line 2, column 1: expected ',' or ']'"):
        parse_models("name: [unclosed\n", WHERE)


def test_hostile_files_are_refused_before_or_while_parsing(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("description: " + "x" * 300_000 + "\n")
    with pytest.raises(ModelError, match=r"refused: larger than the 256 KiB a model file may have"):
        load_file(big)
    deep = "a: " + "[" * 100 + "]" * 100 + "\n"
    with pytest.raises(ModelError, match="nests deeper than 32 levels at line 1"):
        parse_models(deep, WHERE)
    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for level in "bcdefg":
        previous = chr(ord(level) - 1)
        laughs += f"{level}: &{level} [{', '.join(f'*{previous}' for _ in range(10))}]\n"
    with pytest.raises(ModelError, match="expands to more than 100,000 values"):
        parse_models(laughs, WHERE)
    many = "".join(f"---\nname: m{i}\nsource: {{path: /m}}\n" for i in range(101))
    with pytest.raises(ModelError, match="holds more than 100 documents: split it"):
        parse_models(many, WHERE)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"name: \xff\n")
    with pytest.raises(ModelError, match="not UTF-8"):
        load_file(binary)


def test_several_models_in_one_file_need_names_and_distinct_ids() -> None:
    text = "name: a\nsource: {path: /m}\n---\nsource: {path: /n}\n"
    with pytest.raises(ModelError) as caught:
        parse_models(text, WHERE)
    assert caught.value.problems == (
        f"{WHERE} (model 2): name: is required: add name: (a DNS label such as qwen3-8b)",
    )
    twice = "name: a\nsource: {path: /m}\n---\nname: b\naliases: [a]\nsource: {path: /n}\n"
    with pytest.raises(ModelError, match=r"'a' names two models \('a' and 'b'\): rename one"):
        parse_models(twice, WHERE)
    items = [{"name": "a", "source": {"path": "/m"}}, {"name": "b", "source": {"path": "/n"}}]
    kube_list = {"apiVersion": "v1", "kind": "List", "items": items}
    assert [m.name for m in parse(kube_list)] == ["a", "b"]


def test_a_directory_refuses_a_second_model_with_a_taken_name_naming_both_files(
    tmp_path: Path,
) -> None:
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(BASE))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(changed("name", "other")))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(changed("vllm.dtype", "fp9") | {"name": "c",
                                                    "gpu_count": 1}))  # fmt: skip
    (tmp_path / "d.yml").write_text(yaml.safe_dump({"name": "d", "source": {"path": "/d"}}))
    (tmp_path / ".hidden.yaml").write_text("not: [a model")
    (tmp_path / "notes.txt").write_text("ignored")
    models, errors = load_directory(tmp_path)
    assert sorted(models) == ["chat", "d"]
    assert [str(e) for e in errors] == [
        f"{tmp_path / 'b.yaml'}: 'qwen3' (model 'other') is already defined in "
        f"{tmp_path / 'a.yaml'} (model 'chat'): rename one of the two",
        f"{tmp_path / 'c.yaml'}: gpu_count: {INFRA} (1 more: hubctl models validate "
        f"{tmp_path / 'c.yaml'})",
    ]
    with pytest.raises(ModelError, match="no such models directory; pass --models DIR"):
        load_directory(tmp_path / "missing")


def test_find_by_name_or_alias_and_close_names_for_an_unknown_one() -> None:
    models, _ = load_directory(MODELS)
    assert find(models, "qwen3-8b").name == "qwen3-8b-gguf"  # an alias
    assert find(models, "r1-32b").name == "deepseek-r1-distill-qwen-32b"
    with pytest.raises(ModelError) as caught:
        find(models, "qwen3-8b-guff")
    assert str(caught.value) == (
        "model 'qwen3-8b-guff' not found; did you mean 'qwen3-8b-gguf' or 'qwen3-8b'? (available: "
        "deepseek-r1-distill-qwen-32b, llama31-8b-instruct, qwen3-8b-gguf, qwen3-coder-30b-fp8)"
    )


def test_a_not_found_line_lists_a_bounded_number_of_models() -> None:
    one = next(iter(load_directory(MODELS)[0].values()))
    many = {f"m{i:03}": dataclasses.replace(one, name=f"m{i:03}", aliases=()) for i in range(500)}
    with pytest.raises(ModelError) as caught:
        find(many, "zzz")
    line = str(caught.value)
    assert "m019" in line and "m020" not in line and "and 480 more: `hubctl models`" in line
    assert len(line) < 400


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(10**20), 10**20),
                    st.floats(allow_nan=True), st.text(max_size=20))  # fmt: skip
KEYS = st.sampled_from([*BASE, "vllm", "llama_cpp", "source", "hf", "gguf", "path", "repo",
                        "file", "max_model_len", "backend", "n_ctx", "env", "extra_args",
                        "apiVersion", "kind", "spec", "metadata", "modelName", "x"])  # fmt: skip
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(KEYS, inner, max_size=5), max_leaves=20)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, VALUES, max_size=8))
def test_any_document_is_a_model_or_problem_lines_never_a_crash(data: dict[str, Any]) -> None:
    try:
        parse(data)
    except ModelError as exc:
        assert exc.problems and all(line.startswith(str(WHERE)) for line in exc.problems)
        assert all("\n" not in line for line in exc.problems)
