"""vLLM-Chill's VLLMModel documents: read unchanged, problems named with the spec's fields,
and converted both ways without losing a field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from hub.models import chill, vllm
from hub.models.load import ModelError, parse_models
from hub.models.schema import HfSource, as_dict

WHERE = Path("models/qwen.yaml")
SEED: dict[str, Any] = {  # the design's example, as vLLM-Chill users have it
    "apiVersion": "vllm.sir-alfred.io/v1alpha1",
    "kind": "VLLMModel",
    "metadata": {"name": "qwen3-coder-30b-fp8"},
    "spec": {
        "modelName": "Qwen/Qwen3-Coder-30B-A3B-Instruct-FP8",
        "servedModelName": "qwen3-coder-30b-fp8",
        "toolCallParser": "qwen3_coder",
        "reasoningParser": "",
        "maxModelLen": 112640,
        "gpuMemoryUtilization": 0.91,
        "enableChunkedPrefill": True,
        "maxNumBatchedTokens": 8192,
        "maxNumSeqs": 16,
        "dtype": "float16",
        "disableCustomAllReduce": True,
        "enablePrefixCaching": True,
        "enableAutoToolChoice": True,
    },
}


def read(doc: Any) -> Any:
    return parse_models(yaml.safe_dump(doc, sort_keys=False), WHERE)


def test_a_vllmmodel_reads_as_a_model_and_gives_the_same_command() -> None:
    (model,) = read(SEED)
    assert model.name == "qwen3-coder-30b-fp8" and model.engine == "vllm"
    assert model.source == HfSource("Qwen/Qwen3-Coder-30B-A3B-Instruct-FP8")
    assert model.vllm is not None and model.vllm.reasoning_parser is None  # "" is none
    assert vllm.args(model) == [
        "--model=Qwen/Qwen3-Coder-30B-A3B-Instruct-FP8", "--served-model-name=qwen3-coder-30b-fp8",
        "--max-model-len=112640", "--gpu-memory-utilization=0.91", "--max-num-seqs=16",
        "--max-num-batched-tokens=8192", "--enable-auto-tool-choice",
        "--tool-call-parser=qwen3_coder", "--dtype=float16",
        "--disable-custom-all-reduce"]  # fmt: skip


def test_round_trips_both_ways() -> None:
    (model,) = read(SEED)
    exported = chill.export(model)
    expected = copy.deepcopy(SEED)
    del expected["spec"]["reasoningParser"]  # "" (none) is written by leaving it out
    assert exported == expected
    assert read(exported) == (model,)
    (ours,) = parse_models(yaml.safe_dump(as_dict(model)), WHERE)
    assert ours == model and ours.digest == model.digest  # same definition, same digest
    richer = as_dict(model) | {"aliases": ["coder"], "vram_gb": 40, "description": "Coder"}
    richer["source"]["hf"]["revision"] = "v2"
    richer["vllm"]["extra_args"] = ["--kv-cache-dtype=fp8"]
    (full,) = parse_models(yaml.safe_dump(richer), WHERE)
    assert read(chill.export(full)) == (full,)


def test_problems_name_the_spec_fields() -> None:
    doc = copy.deepcopy(SEED)
    doc["spec"].update({"maxModelLen": 0, "gpuCount": 2, "cpuOffloadGB": 8, "maxModelLength": 3,
                        "toolCallParser": ""})  # fmt: skip
    with pytest.raises(ModelError) as caught:
        read(doc)
    infra = ("is an infrastructure parameter, not the model's: give it where the model is "
             "deployed (the node and GPUs it runs on), not in the model file")  # fmt: skip
    assert caught.value.problems == (
        f"{WHERE}: spec.gpuCount: {infra}",
        f"{WHERE}: spec.cpuOffloadGB: {infra}",
        f"{WHERE}: spec.maxModelLength: unknown key (did you mean 'maxModelLen'?); allowed: "
        + ", ".join(chill.SPEC_KEYS),
        f"{WHERE}: spec.maxModelLen: must be a whole number >= 1, got 0",
        f"{WHERE}: spec.enableAutoToolChoice: needs spec.toolCallParser (vLLM refuses "
        "--enable-auto-tool-choice without --tool-call-parser): add spec.toolCallParser, e.g. "
        "hermes, or remove it",
    )


def test_a_document_that_is_not_a_vllmmodel() -> None:
    doc = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {}}
    with pytest.raises(ModelError) as caught:
        read(doc)
    assert caught.value.problems[:2] == (
        f"{WHERE}: kind: must be VLLMModel, got 'Deployment': only VLLMModel documents (or our "
        "model files, without apiVersion and kind) are models",
        f"{WHERE}: apiVersion: must be vllm.sir-alfred.io/v1alpha1, got 'apps/v1'",
    )
    nameless = copy.deepcopy(SEED)
    nameless["metadata"] = {"namespace": "vllm"}
    with pytest.raises(ModelError) as caught:
        read(nameless)
    assert caught.value.problems == (
        f"{WHERE}: metadata.name: is required: add the model's name, a DNS label",
    )


def test_a_local_path_and_the_models_that_cannot_be_vllmmodels() -> None:
    doc = copy.deepcopy(SEED)
    doc["spec"]["modelName"] = "/models/qwen3-coder"
    (model,) = read(doc)
    assert chill.export(model)["spec"]["modelName"] == "/models/qwen3-coder"
    (gguf,) = parse_models("name: tiny\nsource: {path: /m/tiny.gguf}\n", WHERE)
    with pytest.raises(ValueError, match="runs on llama-cpp: a VLLMModel describes vLLM models"):
        chill.export(gguf)


def test_a_kubectl_list_of_vllmmodels() -> None:
    other = copy.deepcopy(SEED)
    other["metadata"]["name"] = "other"
    other["spec"]["servedModelName"] = "other"
    listing = {"apiVersion": "v1", "kind": "List", "items": [SEED, other]}
    assert [model.name for model in read(listing)] == ["qwen3-coder-30b-fp8", "other"]
