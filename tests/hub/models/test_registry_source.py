"""Models from the registry (issue 17): `source: {registry: NAME, file: F}` read and checked,
the commands that read the node's model cache, the plan's refusal of an entry that is missing
or not ready, and every other source's definition and deployment digests unchanged."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from hub.models import cached, catalog, deploy, fields, llamacpp, load, plan, vllm
from hub.models.checks import Problems
from hub.models.schema import Deployment, RegistryCopy, RegistrySource, as_dict

REPO_ROOT = Path(__file__).resolve().parents[3]
COMMIT = "0123456789abcdef0123456789abcdef01234567"
GGUF_ENTRY = RegistryCopy("qwen-gguf", "files", files=(("qwen-q4.gguf", 5 * 1024**3),
                                                       ("README.md", 100)))  # fmt: skip
HF_ENTRY = RegistryCopy("qwen", "hf", "Qwen/Qwen3-8B", COMMIT,
                        (("config.json", 700), ("model-00001-of-00002.safetensors", 8 * 1024**3),
                         ("model-00002-of-00002.safetensors", 8 * 1024**3),
                         ("Qwen3-8B-Q8.gguf", 9 * 1024**3)))  # fmt: skip


def read(data: dict[str, Any]) -> tuple[Any, list[str]]:
    p = Problems()
    model = fields.read(p, {"name": "chat", **data}, "chat")
    return model, p.lines


def test_a_registry_source_reads_describes_and_round_trips() -> None:
    model, problems = read({"source": {"registry": "qwen-gguf", "file": "qwen-q4.gguf"}})
    assert problems == []
    assert model.source == RegistrySource("qwen-gguf", "qwen-q4.gguf")
    assert model.engine == "llama-cpp"  # a .gguf file: llama.cpp by default
    assert model.source.describe() == "registry:qwen-gguf/qwen-q4.gguf"
    assert as_dict(model)["source"] == {"registry": "qwen-gguf", "file": "qwen-q4.gguf"}
    again, problems = read(as_dict(model))
    assert problems == [] and again == model and again.digest == model.digest
    whole, _ = read({"source": {"registry": "qwen"}})
    assert whole.engine == "vllm" and whole.source.describe() == "registry:qwen"
    assert as_dict(whole)["source"] == {"registry": "qwen"}
    llama, problems = read({"source": {"registry": "qwen-gguf"}, "engine": "llama-cpp"})
    assert problems == [] and llama.source == RegistrySource("qwen-gguf")  # its only .gguf


BAD = [
    ({"source": {"registry": "Qwen_GGUF"}}, "source.registry: 'Qwen_GGUF' is not a valid name: "
     "use a DNS label as the registry entry's name: 1 to 63 lowercase letters, digits or '-', "
     "starting and ending with a letter or digit, e.g. 'qwen-gguf'"),
    ({"source": {"registry": "q", "file": "../x.gguf"}}, "source.file: must be a relative path "
     "of a file of the entry, e.g. model-q4_k_m.gguf, got '../x.gguf'"),
    ({"source": {"registry": "q", "file": "/x.gguf"}}, "source.file: must be a relative path "
     "of a file of the entry, e.g. model-q4_k_m.gguf, got '/x.gguf'"),
    ({"source": {"registry": "q", "file": "x.gguf"}, "engine": "vllm"}, "source.file: vLLM "
     "serves the whole entry (a Hugging Face repository): remove file, or use engine: llama-cpp"),
    ({"source": {"registry": "q", "file": "config.json"}, "engine": "llama-cpp"}, "source.file: "
     "llama.cpp needs a .gguf file, got 'config.json': name the entry's .gguf file"),
    ({"source": {"hf": {"repo": "a/b"}, "file": "x.gguf"}}, "source.file: unknown key; file "
     "goes only with registry:"),
    ({"source": {"path": "/m", "registry": "q"}}, "source: must have exactly one of hf, gguf, "
     "path, registry, got path and registry"),
]  # fmt: skip


@pytest.mark.parametrize(("data", "line"), BAD)
def test_a_bad_registry_source_is_one_line_naming_the_fix(data: dict[str, Any], line: str) -> None:
    model, problems = read(data)
    assert model is None
    assert line in problems, problems


def test_registry_users_are_the_models_whose_source_is_the_entry(tmp_path: Path) -> None:
    docs = {
        "a.yaml": {"name": "a", "source": {"registry": "qwen"}},
        "b.yaml": {"name": "b", "engine": "llama-cpp", "source": {"registry": "qwen",
                                                                  "file": "Qwen3-8B-Q8.gguf"}},
        "c.yaml": {"name": "c", "source": {"registry": "other"}},
        "d.yaml": {"name": "d", "source": {"hf": {"repo": "Qwen/Qwen3-8B"}}},
    }  # fmt: skip
    for file, doc in docs.items():
        (tmp_path / file).write_text(yaml.safe_dump(doc))
    assert catalog.registry_users(tmp_path, "qwen") == ["a", "b"]
    assert catalog.registry_users(tmp_path, "none") == []


def llama_model(source: RegistrySource) -> Any:
    model, problems = read({"source": {"registry": source.name, **({"file": source.file}
                            if source.file else {})}, "engine": "llama-cpp"})  # fmt: skip
    assert problems == []
    return model


def test_llama_cpp_reads_the_gguf_from_the_node_cache_in_either_layout() -> None:
    files = llama_model(RegistrySource("qwen-gguf"))
    args = llamacpp.args(files, Deployment(entry=GGUF_ENTRY))
    assert args[3] == "--model=${GPUFLEET_MODEL_CACHE}/files/qwen-gguf/qwen-q4.gguf"
    hf = llama_model(RegistrySource("qwen", "Qwen3-8B-Q8.gguf"))
    args = llamacpp.args(hf, Deployment(entry=HF_ENTRY))
    assert args[3] == (f"--model=${{GPUFLEET_MODEL_CACHE}}/hf/models--Qwen--Qwen3-8B/snapshots/"
                       f"{COMMIT}/Qwen3-8B-Q8.gguf")  # fmt: skip
    # A host process carries the variable unexpanded: the agent expands it.
    spec = deploy.host_process(files, deploy.Placement((0,), 8001), entry=GGUF_ENTRY)
    assert "--model=${GPUFLEET_MODEL_CACHE}/files/qwen-gguf/qwen-q4.gguf" in spec.args


def test_the_gguf_file_must_be_named_when_the_entry_has_several_or_none() -> None:
    several = dataclasses.replace(GGUF_ENTRY, files=(("a.gguf", 1), ("b.gguf", 1)))
    with pytest.raises(ValueError, match=r"has 2 \.gguf files \(a\.gguf, b\.gguf\): name one "
                                         r"with source\.file"):  # fmt: skip
        llamacpp.args(llama_model(RegistrySource("qwen-gguf")), Deployment(entry=several))
    none = dataclasses.replace(GGUF_ENTRY, files=(("README.md", 1),))
    with pytest.raises(ValueError, match=r"has no \.gguf file: llama\.cpp needs one"):
        llamacpp.args(llama_model(RegistrySource("qwen-gguf")), Deployment(entry=none))
    with pytest.raises(ValueError, match=r"has no file 'x\.gguf' \(its files: qwen-q4\.gguf, "
                                         r"README\.md\): fix source\.file"):  # fmt: skip
        llamacpp.args(llama_model(RegistrySource("qwen-gguf", "x.gguf")),
                      Deployment(entry=GGUF_ENTRY))  # fmt: skip


def vllm_model() -> Any:
    model, problems = read({"source": {"registry": "qwen"}, "vllm": {"max_model_len": 8192,
                            "env": {"HF_HUB_OFFLINE": "0"}}})  # fmt: skip
    assert problems == []
    return model


def test_vllm_reads_the_hf_layout_offline_from_a_read_only_bind() -> None:
    model = vllm_model()
    args = vllm.args(model, Deployment(entry=HF_ENTRY))
    assert args[:3] == ["--model=Qwen/Qwen3-8B", f"--revision={COMMIT}",
                        "--served-model-name=chat"]  # fmt: skip
    # An import's revision is no Hub commit: offline, refs/main finds its snapshot.
    imported = dataclasses.replace(HF_ENTRY, revision="e" * 64)
    assert vllm.args(model, Deployment(entry=imported))[:2] == [
        "--model=Qwen/Qwen3-8B",
        "--served-model-name=chat",
    ]
    # The model's env cannot turn the offline cache off.
    assert vllm.env(model) == {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": "/models-cache"}
    document = deploy.compose(model, deploy.Placement((0,), 8000), 20.0, "img", HF_ENTRY)
    service = document["services"]["server"]
    assert "${GPUFLEET_MODEL_CACHE}/hf:/models-cache:ro" in service["volumes"]
    assert service["environment"]["HF_HUB_CACHE"] == "/models-cache"
    with pytest.raises(ValueError, match="holds plain files; vLLM reads a Hugging Face "
                                         "repository"):  # fmt: skip
        vllm.args(model, Deployment(entry=dataclasses.replace(HF_ENTRY, layout="files")))


UNUSABLE = [
    (None, "model chat: registry entry qwen does not exist: `hubctl registry pull qwen --hf "
     "ORG/NAME` (or `hubctl registry import qwen PATH`) fills it"),
    (dataclasses.replace(HF_ENTRY, state="pulling"), "model chat: registry entry qwen is not "
     "ready (pulling): wait for its `hubctl registry pull` (`hubctl ops` shows it)"),
    (dataclasses.replace(HF_ENTRY, state="failed", message="cancelled"), "model chat: registry "
     "entry qwen failed (cancelled): `hubctl registry pull qwen --hf ORG/NAME` again"),
]  # fmt: skip


@pytest.mark.parametrize(("entry", "line"), UNUSABLE)
def test_a_switch_to_a_missing_or_unready_entry_is_refused_with_the_pull(
    entry: RegistryCopy | None, line: str
) -> None:
    model = vllm_model()
    assert cached.unusable(model, entry) == line
    request = plan.Request("chat", (0,), 0, 8000, "img", (), (entry,) if entry else ())
    with pytest.raises(plan.EntryUnusable) as caught:
        plan.planned({"chat": model}, model, request, [], {})
    assert str(caught.value) == line


def test_the_plan_generates_from_the_entry_and_estimates_from_its_sizes() -> None:
    model = vllm_model()
    request = plan.Request("chat", (0,), 0, 8000, "img", (), (GGUF_ENTRY, HF_ENTRY))
    found = plan.planned({"chat": model}, model, request, [], {})
    assert found.entry == HF_ENTRY
    assert "--model=Qwen/Qwen3-8B" in found.target.text
    # 16 GiB of safetensors + the 9 GiB .gguf at the top level, as a directory on disk counts.
    assert found.vram_basis.startswith("weights 25.0 GiB")
    # A new revision of the entry is a new deployment: the next switch is a change.
    moved = dataclasses.replace(HF_ENTRY, revision="f" * 40)
    again = plan.planned({"chat": model}, model,
                         dataclasses.replace(request, entries=(moved,)), [], {})  # fmt: skip
    assert again.target.digest != found.target.digest
    # A node's previous deployment from the registry regenerates from the entries too.
    stored = plan.Stored("gpu-a", "chat", (0,), 8000)
    assert plan.regenerate({"chat": model}, stored, "img", (HF_ENTRY,)) is not None
    assert plan.regenerate({"chat": model}, stored, "img", ()) is None


def test_the_show_command_of_a_registry_model(tmp_path: Path) -> None:
    (tmp_path / "chat.yaml").write_text(
        yaml.safe_dump({"name": "chat", "engine": "llama-cpp", "source": {"registry": "qwen-gguf"}})
    )
    shown = catalog.detail(tmp_path, "chat", registry=(GGUF_ENTRY,))
    assert "--model=${GPUFLEET_MODEL_CACHE}/files/qwen-gguf/qwen-q4.gguf" in shown.argv
    missing = catalog.detail(tmp_path, "chat")
    assert missing.argv == () and "registry entry qwen-gguf does not exist" in missing.command_error


# The shipped models' definition digests and generated deployment digests from before the
# registry source existed: adding it must not restart anything that runs. The llama.cpp
# deployment's digest changed since on purpose (--interrupt_requests=false: the server no
# longer cuts a stream short when a health check arrives): a server started before matches
# its definition again once it is started anew.
SHIPPED = {
    "deepseek-r1-distill-qwen-32b": (
        "d93e21e60b97f724d364c67f5b525ee8e0aefdc458a0a761e854109ee7c450b6",
        "1ae58d8fd65f27a0bef24cc7674ea8320d885dcf64085463199144f66cd56720",
    ),
    "llama31-8b-instruct": (
        "9781e2984bceb188638db30d5645214385958356283043fd4c9193cdd053b696",
        "fcaa9189dbc08bc8af908244b2a0d66d6fba7e39cfe02568e4dabc3c577a9943",
    ),
    "qwen3-8b-gguf": (
        "22a6fecd1860830c83c04efec702841bebff5a25e060d8b9ba7375079dde2516",
        "68c7d7eb36fc0c3e160b959ed34e119c1efbdfb119baa76d5a885a8b9608ed21",
    ),
    "qwen3-coder-30b-fp8": (
        "272b195cef587f76936007c3dd522aba5c19d90e208ef1d727486ae42607aea9",
        "2b1b5c55216732174190fbd4db7cbd9ab99aa0eb2d05b0847c42d20e876ef412",
    ),
}


def test_the_digests_of_every_other_source_are_unchanged() -> None:
    models, errors = load.load_directory(REPO_ROOT / "configs" / "models")
    assert errors == []
    found = {}
    for name, model in sorted(models.items()):
        where = deploy.placement(model, (), 0, 8000)
        found[name] = (model.digest, deploy.configuration(model, where, 10.0).digest)
    assert found == SHIPPED
