"""Model definitions through a real hub and hubctl: the listing (with hostile files in the
directory), one model's exact engine command, validation with every problem, conversion to and
from vLLM-Chill's VLLMModel, unknown names. No agent: nothing here starts a model."""

from __future__ import annotations

import os
import shlex
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hub.models import estimate
from hub.models.load import load_file
from hub.models.schema import as_dict
from tests.hub.models.gguf_file import tiny
from tests.support.procs import REPO, Cluster

MODELS = REPO / "configs" / "models"
SHIPPED = ["deepseek-r1-distill-qwen-32b", "llama31-8b-instruct", "qwen3-8b-gguf",
           "qwen3-coder-30b-fp8"]  # fmt: skip
LLAMA_COMMAND = (
    "vllm serve --model=meta-llama/Llama-3.1-8B-Instruct --revision=main "
    "--served-model-name=llama-3.1-8b-instruct --max-model-len=32768 "
    "--gpu-memory-utilization=0.9 --max-num-seqs=64 --enable-auto-tool-choice "
    "--tool-call-parser=llama3_json --dtype=bfloat16 --port=8000"
)
GGUF_COMMAND = (
    "python -m llama_cpp.server --model=Qwen3-8B-Q4_K_M.gguf --hf_model_repo_id=Qwen/Qwen3-8B-GGUF"
    " --model_alias=qwen3-8b-gguf --port=8000 --n_gpu_layers=-1 --n_ctx=8192 --n_batch=512"
    " --interrupt_requests=false"
)
LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True)
)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Path]]:
    """A hub on a copy of the shipped models, beside hostile files and local GGUF models."""
    root = tmp_path_factory.mktemp("models")
    models = root / "models"
    shutil.copytree(MODELS, models)
    (models / "laughs.yaml").write_text(LAUGHS)  # a billion values through aliases
    (models / "deep.yaml").write_text("[" * 5000 + "]" * 5000)
    (models / "huge.yaml").write_text("# padding\n" * 40_000)  # 400 KB
    (root / "tiny.gguf").write_bytes(tiny())
    os.mkfifo(root / "pipe.gguf")  # opening it would block the reader for ever
    for name, path in (("tiny", root / "tiny.gguf"), ("pipe", root / "pipe.gguf")):
        (models / f"{name}.yaml").write_text(
            f"engine: llama-cpp\nsource: {{path: {path}}}\nllama_cpp: {{n_ctx: 256}}\n"
        )
    (models / "pinned.yaml").write_text(
        "engine: llama-cpp\nsource: {gguf: {repo: Org/Repo, file: m.gguf, revision: v1}}\n"
    )
    cluster = Cluster(root, None, hub_args=("--models", str(models)))
    cluster.start_hub()
    try:
        yield cluster, models
    finally:
        cluster.close()


def run(cluster: Cluster, *args: str) -> tuple[int, str, list[str]]:
    done = cluster.hubctl(*args, check=False)
    assert "Traceback" not in done.stderr
    return done.returncode, done.stdout, done.stderr.splitlines()


def test_the_listing_beside_hostile_files(hub: tuple[Cluster, Path]) -> None:
    cluster, models = hub
    started = time.monotonic()
    listed = cluster.json("models")
    assert time.monotonic() - started < 8  # a blocking FIFO would hold it 30 s, then fail
    by_name: dict[str, dict[str, Any]] = {m["name"]: m for m in listed["models"]}
    assert sorted(by_name) == sorted([*SHIPPED, "pinned", "pipe", "tiny"])
    llama = by_name["llama31-8b-instruct"]
    assert (llama["engine"], llama["source"], llama["served_model_name"], llama["aliases"]) == (
        "vllm", "hf:meta-llama/Llama-3.1-8B-Instruct@main", "llama-3.1-8b-instruct", ["llama3-8b"]
    )  # fmt: skip
    assert (llama["max_context"], llama["vram_gb"]) == (32768, 21.6)
    assert llama["vram_basis"] == "vram_gb in the definition"
    assert llama["digest"] == load_file(MODELS / "llama31-8b-instruct.yaml")[0].digest
    coder = by_name["qwen3-coder-30b-fp8"]  # a VLLMModel, no vram_gb, weights not on the hub
    assert coder["vram_gb"] is None and coder["max_context"] == 112640
    assert coder["vram_basis"].startswith("estimate unknown: set vram_gb (the weights of hf:")
    # A local GGUF is estimated from its header; a FIFO is never opened.
    [model] = load_file(models / "tiny.yaml")
    figure = estimate.estimate(model, estimate.DiskSizes())
    assert (by_name["tiny"]["vram_gb"], by_name["tiny"]["vram_basis"]) == (0.1, figure.basis)
    assert figure.basis.startswith("tensors 0.00 GiB + KV cache for 256 tokens")
    assert by_name["tiny"]["max_context"] == 256
    assert by_name["pipe"]["vram_gb"] is None
    assert "is not on this host" in by_name["pipe"]["vram_basis"]
    errors = sorted(listed["errors"])
    assert len(errors) == 3, errors
    for error, name, why in zip(errors, ["deep", "huge", "laughs"],
                                ["nests deeper than 32 levels", "larger than the 256 KiB",
                                 "expands to more than 100,000 values"], strict=True):  # fmt: skip
        assert error.startswith(f"{models / name}.yaml: refused: ") and why in error, error

    code, out, err = run(cluster, "models")
    assert code == 0 and err == []
    header, *rows = out.splitlines()
    assert header.split() == ["NAME", "ENGINE", "SOURCE", "CONTEXT", "VRAM/GPU", "GPUS",
                              "NEEDED", "RUNNING", "ON", "DESCRIPTION"]  # fmt: skip
    row = next(r.split() for r in rows if r.split()[:1] == ["qwen3-coder-30b-fp8"])
    # No GPU known (no agent): how many it needs is unknown; it runs nowhere.
    assert row[1:7] == ["vllm", "hf:Qwen/Qwen3-Coder-30B-A3B-Instruct-FP8", "112640", "?", "?",
                        "-"]  # fmt: skip
    assert sum(r.startswith("not loaded: ") for r in rows) == 3
    assert cluster.hubctl("nodes").returncode == 0  # the hub answers other calls meanwhile


def test_a_model_shows_its_exact_engine_command(hub: tuple[Cluster, Path]) -> None:
    cluster, _ = hub
    code, out, _ = run(cluster, "models", "show", "llama3-8b")  # by its alias
    assert code == 0 and f"  {LLAMA_COMMAND}" in out.splitlines()
    assert "Command for GPU 0, port 8000:" in out and "  HF_HUB_ENABLE_HF_TRANSFER=1" in out
    shown = cluster.json("models", "show", "llama31-8b-instruct")
    assert shown["command"] == LLAMA_COMMAND and shown["argv"] == shlex.split(LLAMA_COMMAND)
    assert shown["env"] == {"HF_HUB_ENABLE_HF_TRANSFER": "1"}
    assert shown["deployment"] == "GPU 0, port 8000" and shown["command_error"] is None
    [model] = load_file(MODELS / "llama31-8b-instruct.yaml")
    assert yaml.safe_load(shown["definition"]) == as_dict(model)

    gguf = cluster.json("models", "show", "qwen3-8b")
    assert gguf["command"] == GGUF_COMMAND and gguf["env"] == {"CUDA_VISIBLE_DEVICES": "0"}
    pinned = cluster.json("models", "show", "pinned")  # llama-cpp-python cannot pin a revision
    assert pinned["command"] is None and pinned["argv"] == []
    assert "cannot fetch revision 'v1'" in pinned["command_error"]
    code, out, _ = run(cluster, "models", "show", "pinned")
    assert code == 0 and "  none: model 'pinned': llama-cpp-python cannot fetch" in out


def test_an_unknown_model_is_one_line_with_close_names(hub: tuple[Cluster, Path]) -> None:
    cluster, _ = hub
    code, out, err = run(cluster, "models", "show", "llama31-8b")
    assert code == 1 and out == "" and len(err) == 1
    assert err[0].startswith("hubctl: model 'llama31-8b' not found; did you mean 'llama3-8b' "
                             "or 'llama31-8b-instruct'? (available: deepseek-r1")  # fmt: skip
    code, out, err = run(cluster, "models", "show", "")
    assert code == 1 and out == "" and len(err) == 1 and "is not one" in err[0]


def test_validate_lists_every_problem(hub: tuple[Cluster, Path], tmp_path: Path) -> None:
    cluster, _ = hub
    text = (MODELS / "llama31-8b-instruct.yaml").read_text()
    for old, new in [("max_num_seqs: 64", "max_num_seq: 64"), ("dtype: bfloat16", "dtype: bf16"),
                     ("aliases: [llama3-8b]", "aliases: [llama3-8b]\ngpu_count: 2")]:  # fmt: skip
        text = text.replace(old, new)
    (tmp_path / "three.yaml").write_text(text)
    code, out, err = run(cluster, "models", "validate", str(tmp_path / "three.yaml"))
    assert code == 1 and out == "" and len(err) == 3, err
    assert [line.split(": ")[2] for line in err] == ["gpu_count", "vllm.max_num_seq", "vllm.dtype"]
    assert all(line.startswith("hubctl: three.yaml: ") for line in err)
    assert "(did you mean 'max_num_seqs'?)" in err[1] and "(did you mean 'bfloat16'?)" in err[2]

    chill = (MODELS / "qwen3-coder-30b-fp8.yaml").read_text()
    chill = chill.replace("maxModelLen: 112640", "maxModelLen: -5")
    (tmp_path / "chill.yaml").write_text(chill.replace('"qwen3_coder"', '""'))
    files = [str(tmp_path / "three.yaml"), str(tmp_path / "chill.yaml"),
             str(MODELS / "llama31-8b-instruct.yaml")]  # fmt: skip
    found = cluster.hubctl("models", "validate", *files, "--json", check=False)
    report = yaml.safe_load(found.stdout)
    assert found.returncode == 1 and report["valid"] is False
    assert [len(f["problems"]) for f in report["files"]] == [3, 2, 0]
    assert report["problems"][3].startswith("chill.yaml: spec.maxModelLen: must be")
    assert "spec.enableAutoToolChoice: needs spec.toolCallParser" in report["problems"][4]
    assert [m["name"] for m in report["files"][2]["models"]] == ["llama31-8b-instruct"]

    code, out, err = run(cluster, "models", "validate", str(MODELS / "qwen3-coder-30b-fp8.yaml"))
    assert code == 0 and err == []
    assert out == (f"{MODELS / 'qwen3-coder-30b-fp8.yaml'}: valid model qwen3-coder-30b-fp8 "
                   "(vllm, hf:Qwen/Qwen3-Coder-30B-A3B-Instruct-FP8)\n")  # fmt: skip
    code, _, err = run(cluster, "models", "validate", str(tmp_path / "nope.yaml"))
    assert code == 2 and len(err) == 1 and "cannot read" in err[0]


def test_convert_both_ways(hub: tuple[Cluster, Path], tmp_path: Path) -> None:
    cluster, _ = hub
    original = yaml.safe_load((MODELS / "qwen3-coder-30b-fp8.yaml").read_text())
    code, ours, err = run(cluster, "models", "convert", str(MODELS / "qwen3-coder-30b-fp8.yaml"))
    assert code == 0 and err == []
    assert yaml.safe_load(ours)["vllm"]["tool_call_parser"] == "qwen3_coder"
    assert "apiVersion" not in ours
    (tmp_path / "ours.yaml").write_text(ours)
    code, back, err = run(cluster, "models", "convert", str(tmp_path / "ours.yaml"), "--to",
                          "vllmmodel")  # fmt: skip
    assert code == 0 and err == []
    del original["spec"]["reasoningParser"]  # "": vLLM-Chill's "none", which we leave out
    assert yaml.safe_load(back) == original

    converted = cluster.json("models", "convert", str(MODELS / "llama31-8b-instruct.yaml"),
                             "--to", "vllmmodel")  # fmt: skip
    assert converted["problems"] == [] and converted["models"] == ["llama31-8b-instruct"]
    (tmp_path / "chill.yaml").write_text(converted["yaml"])
    _, again, _ = run(cluster, "models", "convert", str(tmp_path / "chill.yaml"))
    [model] = load_file(MODELS / "llama31-8b-instruct.yaml")
    assert yaml.safe_load(again) == as_dict(model)

    code, out, err = run(cluster, "models", "convert", str(MODELS / "qwen3-8b-gguf.yaml"),
                         "--to", "vllmmodel")  # fmt: skip
    assert code == 1 and out == "" and len(err) == 1
    assert "runs on llama-cpp: a VLLMModel describes vLLM models only" in err[0]
    code, out, err = run(cluster, "models", "convert", str(MODELS / "qwen3-8b-gguf.yaml"),
                         "--to", "kubernetes")  # fmt: skip
    assert (
        code == 2
        and out == ""
        and err == ["hubctl: --to 'kubernetes' is not a format: use gpufleet or vllmmodel"]
    )


def test_a_missing_models_directory_is_one_line(hub: tuple[Cluster, Path]) -> None:
    cluster, models = hub
    away = models.with_name("elsewhere")
    models.rename(away)
    try:
        code, out, err = run(cluster, "models")
    finally:
        away.rename(models)
    assert code == 1 and out == ""
    assert err == [f"hubctl: {models}: no such models directory; pass --models DIR"]
    assert cluster.json("models")["models"]  # read again at each call
