"""hubctl models: Models messages as plain dicts (what --json prints) and their human form.

Pure functions; rich and the stubs load with this module, never at hubctl's start.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from gpufleet.v1 import models_pb2

FORMATS = ("gpufleet", "vllmmodel")
REGISTRY_SOURCE = "registry:"


def info(message: models_pb2.ModelInfo) -> dict[str, Any]:
    return {
        "name": message.name,
        "aliases": list(message.aliases),
        "engine": message.engine,
        "source": message.source,
        "served_model_name": message.served_model_name,
        "max_context": message.max_context if message.HasField("max_context") else None,
        "vram_gb": round(message.vram.gb, 2) if message.vram.HasField("gb") else None,
        "vram_basis": message.vram.basis,
        "description": message.description,
        "digest": message.digest,
        "file": message.file,
        "gpus_needed": message.gpus_needed if message.HasField("gpus_needed") else None,
        "running_on": list(message.running_on),
        "environment": message.environment or None,
        "backend_switched": message.backend_switched,
        "cached_on": list(message.cached_on),
    }


def detail(message: models_pb2.GetModelResponse) -> dict[str, Any]:
    return {
        "model": info(message.model),
        "definition": message.yaml,
        "deployment": message.deployment,
        "command": message.command or None,
        "argv": list(message.argv),
        "env": dict(sorted(message.env.items())),
        "command_error": message.command_error or None,
    }


def context(model: dict[str, Any]) -> str:
    """Tokens, or 'auto': the model's own (trained) length."""
    return "auto" if model["max_context"] is None else str(model["max_context"])


def vram(model: dict[str, Any]) -> str:
    return "?" if model["vram_gb"] is None else f"{model['vram_gb']:g} GiB"


def needed(model: dict[str, Any]) -> str:
    """GPUs of the cluster's largest that hold the model: '1', 'none' (cpu), '?' (unknown)."""
    count = model["gpus_needed"]
    return "?" if count is None else ("none" if count == 0 else str(count))


def from_registry(model: dict[str, Any]) -> bool:
    """A model whose source is an entry of the hub's registry ('registry:NAME[/FILE]')."""
    return str(model["source"]).startswith(REGISTRY_SOURCE)


def cached(model: dict[str, Any]) -> str:
    """Where the model's registry entry is cached: 'gpu-a, gpu-b (partial)', '-' (nowhere or
    not a registry model)."""
    return ", ".join(model["cached_on"]) or "-"


def table(models: list[dict[str, Any]]) -> Table:
    """`hubctl models`: a CACHED column only when a model comes from the registry."""
    with_cached = any(from_registry(m) for m in models)
    found = Table(box=None, header_style="bold")
    for column in ("NAME", "ENGINE", "SOURCE", "CONTEXT", "VRAM/GPU", "GPUS NEEDED",
                   "RUNNING ON", *(("CACHED",) if with_cached else ()),
                   "DESCRIPTION"):  # fmt: skip
        found.add_column(column)
    for model in models:
        where = [Text(cached(model))] if with_cached else []
        found.add_row(Text(model["name"]), model["engine"], Text(model["source"]),
                      context(model), vram(model), needed(model),
                      Text(", ".join(model["running_on"]) or "-"), *where,
                      Text(model["description"]))  # fmt: skip
    return found


def running(message: models_pb2.RunningModel) -> dict[str, Any]:
    since = message.since.ToDatetime().isoformat(timespec="seconds") + "Z"
    return {
        "node": message.node,
        "model": message.model,
        "engine": message.engine or None,
        "gpus": list(message.gpus),
        "state": message.state,
        "since": since if message.HasField("since") else None,
        "endpoint": message.endpoint or None,
        "message": message.message,
        "project": message.project,
    }


def gpus(found: dict[str, Any]) -> str:
    if found["gpus"]:
        return ",".join(map(str, found["gpus"]))
    return "cpu" if found["engine"] == "llama-cpp" else "-"


def running_table(models: list[dict[str, Any]]) -> Table:
    """`hubctl models running`: one row per node running a model, its note under it."""
    from cli.render import STATE_STYLES, ago

    found = Table(box=None, header_style="bold")
    for column in ("NODE", "MODEL", "ENGINE", "GPUS", "STATE", "SINCE", "ENDPOINT"):
        found.add_column(column)
    for model in models:
        found.add_row(Text(model["node"]), Text(model["model"]), model["engine"] or "?",
                      gpus(model), Text(model["state"],
                                        style=STATE_STYLES.get(model["state"], "yellow")),
                      ago(model["since"]), Text(model["endpoint"] or "-"))  # fmt: skip
        if model["message"]:
            found.add_row("", Text(model["message"], style="dim"))
    return found


def show(found: dict[str, Any]) -> str:
    """`hubctl models show`: the facts, the definition, the command line and its environment."""
    model = found["model"]
    aliases = f" (aliases: {', '.join(model['aliases'])})" if model["aliases"] else ""
    estimate = f"{vram(model)} per GPU ({model['vram_basis']})"
    if model["vram_gb"] is None:
        estimate = f"? ({model['vram_basis']})"
    lines = [
        f"{model['name']}{aliases}",
        *([f"  {model['description']}"] if model["description"] else []),
        f"  engine:       {model['engine']}",
        f"  source:       {model['source']}",
        f"  served as:    {model['served_model_name']}",
        f"  context:      {context(model)}",
        *(
            [
                f"  environment:  {model['environment']}"
                f"{' (switch-backend)' if model['backend_switched'] else ''}"
            ]
            if model["environment"]
            else []
        ),
        *([f"  cached on:    {cached(model)}"] if from_registry(model) else []),
        f"  VRAM:         {estimate}",
        f"  file:         {model['file']}",
        f"  digest:       {model['digest'][:12]}",
        "",
        "Definition:",
        *(f"  {line}" for line in found["definition"].splitlines()),
        "",
        f"Command for {found['deployment']}:",
    ]
    if found["command_error"]:
        lines.append(f"  none: {found['command_error']}")
    else:
        lines.append(f"  {found['command']}")
    if found["env"]:
        lines += ["", "Environment:", *(f"  {k}={v}" for k, v in found["env"].items())]
    return "\n".join(lines)


def checked(file: str, reply: models_pb2.ValidateModelResponse) -> dict[str, Any]:
    """One file as the hub judged it."""
    problems = [line for line in reply.problems if line.strip()]
    if not reply.valid and not problems:
        problems = [f"{file}: not a valid model file"]
    return {
        "file": file,
        "valid": reply.valid,
        "models": [info(m.model) for m in reply.models],
        "problems": problems,
        "exit_code": 0 if reply.valid else 1,
    }


def converted(reply: models_pb2.ValidateModelResponse, to: str) -> tuple[str, list[str]]:
    """The file's models as YAML in `to` (documents joined by ---), or the lines saying why
    not: every problem of an invalid file, or each model that cannot be a VLLMModel."""
    if not reply.valid:
        return "", [line for line in reply.problems if line.strip()] or ["not a valid model file"]
    if to == "gpufleet":
        return "---\n".join(m.yaml for m in reply.models), []
    refused = [f"{m.vllm_model_error}; keep it in gpufleet's form (--to gpufleet)"
               for m in reply.models if not m.vllm_model_yaml]  # fmt: skip
    if refused:
        return "", refused
    return "---\n".join(m.vllm_model_yaml for m in reply.models), []
