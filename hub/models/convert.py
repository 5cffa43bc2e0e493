"""The Models service's protobuf: the one place `hub.models` values become messages."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gpufleet.v1 import models_pb2
from hub.models.catalog import Checked, Detail, Entry
from hub.models.schema import DEFAULT_N_CTX, Model

if TYPE_CHECKING:
    from hub.models.backend import Decision


def max_context(model: Model) -> int | None:
    """Tokens the server takes; None: the model's own (trained) length."""
    if model.vllm is not None:
        return model.vllm.max_model_len
    if model.llama_cpp is not None:
        n_ctx = model.llama_cpp.n_ctx
        return DEFAULT_N_CTX if n_ctx is None else (n_ctx or None)  # 0: the trained length
    return None


def info(entry: Entry, running_on: list[str] | None = None) -> models_pb2.ModelInfo:
    model = entry.model
    message = models_pb2.ModelInfo(
        name=model.name, aliases=list(model.aliases), engine=model.engine,
        source=model.source.describe(), served_model_name=model.served_model_name,
        vram=models_pb2.VramEstimate(basis=entry.estimate.basis),
        description=model.description, digest=model.digest, file=model.file,
        running_on=running_on or [], environment=entry.environment,
        backend_switched=entry.switched,
    )  # fmt: skip
    if entry.gpus_needed is not None:
        message.gpus_needed = entry.gpus_needed
    context = max_context(model)
    if context is not None:
        message.max_context = context
    if entry.estimate.vram_gb is not None:
        message.vram.gb = entry.estimate.vram_gb
    return message


def listing(
    entries: list[Entry], errors: list[str], running_on: dict[str, list[str]] | None = None
) -> models_pb2.ListModelsResponse:
    """The listing; `running_on`: model name -> where it runs ("gpu-a (GPU 0)")."""
    where = running_on or {}
    return models_pb2.ListModelsResponse(
        models=[info(e, where.get(e.model.name)) for e in entries], errors=errors
    )


def detail(found: Detail) -> models_pb2.GetModelResponse:
    return models_pb2.GetModelResponse(
        model=info(found.entry), yaml=found.yaml, deployment=found.deployment,
        command=found.command, argv=list(found.argv), env=dict(found.env),
        command_error=found.command_error,
    )  # fmt: skip


def validation(problems: list[str], models: list[Checked]) -> models_pb2.ValidateModelResponse:
    return models_pb2.ValidateModelResponse(
        valid=not problems,
        problems=problems,
        models=[
            models_pb2.ValidatedModel(model=info(c.entry), yaml=c.yaml,
                                      vllm_model_yaml=c.vllm_model_yaml,
                                      vllm_model_error=c.vllm_model_error)
            for c in models
        ],
    )  # fmt: skip


def backend_switched(decision: Decision, operation_id: str) -> models_pb2.SwitchBackendResponse:
    return models_pb2.SwitchBackendResponse(
        instant_switch=decision.instant, environment=decision.environment,
        operation_id=operation_id, nodes=list(decision.nodes), builds=decision.build_lines(),
    )  # fmt: skip
