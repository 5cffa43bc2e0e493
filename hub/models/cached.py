"""Where a model from the registry is read on a node: its cache, as the engines see it (pure).

A model whose source is `{registry: NAME}` is served from the node's model cache, filled from
the hub's registry (`hubctl models cache`, or a switch's fetch phase). The agent expands
`${GPUFLEET_MODEL_CACHE}` (its cache root) in compose files and host process specs, so the hub
generates one command for every node:

- llama.cpp: `--model=${GPUFLEET_MODEL_CACHE}/files/ENTRY/FILE` (files layout) or
  `--model=${GPUFLEET_MODEL_CACHE}/hf/models--ORG--NAME/snapshots/REVISION/FILE` (hf layout);
  FILE is the source's `file`, else the entry's only .gguf.
- vLLM: `--model=ORG/NAME --revision=COMMIT` read offline from the Hugging Face cache layout
  (HF_HUB_CACHE=/models-cache, HF_HUB_OFFLINE=1) bound read-only from
  `${GPUFLEET_MODEL_CACHE}/hf`.

The entry itself (`RegistryCopy`) comes from the hub's database, read by the hub and handed to
the generators as plain data in `Deployment.entry`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from hub.models.schema import Model, RegistryCopy, RegistrySource

VARIABLE = "GPUFLEET_MODEL_CACHE"
ROOT = "${" + VARIABLE + "}"
CONTAINER_CACHE = "/models-cache"
VOLUME = f"{ROOT}/hf:{CONTAINER_CACHE}:ro"
OFFLINE_ENV = {"HF_HUB_CACHE": CONTAINER_CACHE, "HF_HUB_OFFLINE": "1"}
MAX_LISTED = 5  # files named in a line
COMMIT = re.compile(r"^[0-9a-f]{40}$")  # what huggingface_hub takes as a commit, not a ref


def is_commit(revision: str) -> bool:
    """A Hub commit: offline, a revision of any other form is looked up as a ref and missed
    (an import's revision is the sha256 of its file list; refs/main finds its snapshot)."""
    return bool(COMMIT.match(revision))


def hf_folder(repo: str) -> str:
    """The Hugging Face cache's folder of a repository: models--ORG--NAME."""
    return "models--" + repo.replace("/", "--")


def entry_for(model: Model, entries: Iterable[RegistryCopy]) -> RegistryCopy | None:
    """The entry the model's registry source names, among `entries` (None: none, or the
    model's source is not the registry)."""
    if not isinstance(model.source, RegistrySource):
        return None
    return next((e for e in entries if e.name == model.source.name), None)


def unusable(model: Model, entry: RegistryCopy | None) -> str:
    """Why the model cannot be deployed from its registry entry now, one line naming the fix
    ("" when it can, or its source is not the registry)."""
    source = model.source
    if not isinstance(source, RegistrySource):
        return ""
    name = source.name
    if entry is None or entry.name != name:
        return (
            f"model {model.name}: registry entry {name} does not exist: `hubctl registry "
            f"pull {name} --hf ORG/NAME` (or `hubctl registry import {name} PATH`) fills it"
        )
    if entry.state == "failed":
        why = f" ({entry.message})" if entry.message else ""
        return (f"model {model.name}: registry entry {name} failed{why}: `hubctl registry pull "
                f"{name} --hf ORG/NAME` again")  # fmt: skip
    if not entry.ready:
        return (f"model {model.name}: registry entry {name} is not ready ({entry.state}): wait "
                f"for its `hubctl registry pull` (`hubctl ops` shows it)")  # fmt: skip
    return ""


def entry_of(model: Model, entry: RegistryCopy | None) -> tuple[RegistrySource, RegistryCopy]:
    """The model's registry source and its entry (ValueError, one line, when it is not usable)."""
    why = unusable(model, entry)
    if why:
        raise ValueError(why)
    assert isinstance(model.source, RegistrySource) and entry is not None
    return model.source, entry


def _listed(files: list[str]) -> str:
    more = f" and {len(files) - MAX_LISTED} more" if len(files) > MAX_LISTED else ""
    return ", ".join(files[:MAX_LISTED]) + more


def gguf_file(model: Model, entry: RegistryCopy) -> str:
    """The .gguf file llama.cpp serves: the source's `file` (one of the entry's), else the
    entry's only .gguf (ValueError naming the choice otherwise)."""
    source, entry = entry_of(model, entry)
    if source.file is not None:
        if source.file not in entry.paths:
            raise ValueError(f"model {model.name!r}: registry entry {entry.name!r} has no file "
                             f"{source.file!r} (its files: {_listed(list(entry.paths))}): "
                             "fix source.file")  # fmt: skip
        return source.file
    ggufs = sorted(f for f in entry.paths if f.lower().endswith(".gguf"))
    if len(ggufs) == 1:
        return ggufs[0]
    if not ggufs:
        raise ValueError(f"model {model.name!r}: registry entry {entry.name!r} has no .gguf "
                         "file: llama.cpp needs one (pull a GGUF repository, or use engine: "
                         "vllm)")  # fmt: skip
    raise ValueError(f"model {model.name!r}: registry entry {entry.name!r} has {len(ggufs)} "
                     f".gguf files ({_listed(ggufs)}): name one with source.file")  # fmt: skip


def gguf_path(model: Model, entry: RegistryCopy | None) -> str:
    """The .gguf file's path on a node, under ${GPUFLEET_MODEL_CACHE}."""
    _, found = entry_of(model, entry)
    file = gguf_file(model, found)
    if found.layout == "hf":
        return f"{ROOT}/hf/{hf_folder(found.repo)}/snapshots/{found.revision}/{file}"
    return f"{ROOT}/files/{found.name}/{file}"


def hf_repo(model: Model, entry: RegistryCopy | None) -> RegistryCopy:
    """The entry vLLM reads: one of the hf layout (ValueError otherwise)."""
    _, found = entry_of(model, entry)
    if found.layout != "hf" or not found.repo:
        raise ValueError(f"model {model.name!r}: registry entry {found.name!r} holds plain "
                         "files; vLLM reads a Hugging Face repository: pull one with `hubctl "
                         "registry pull NAME --hf ORG/NAME`, or import with --layout hf --repo "
                         "ORG/NAME")  # fmt: skip
    return found


def is_registry(model: Model) -> bool:
    return isinstance(model.source, RegistrySource)
