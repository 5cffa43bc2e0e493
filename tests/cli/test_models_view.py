"""hubctl models' rendering: Models messages as dicts, the table, the show text, conversion."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console
from rich.table import Table

from cli import models_view
from gpufleet.v1 import models_pb2


def message(**fields: Any) -> models_pb2.ModelInfo:
    base: dict[str, Any] = {"name": "coder", "engine": "vllm", "source": "hf:Org/Coder",
                               "served_model_name": "coder", "digest": "ab" * 32,
                               "file": "/etc/gpufleet/models/coder.yaml"}  # fmt: skip
    return models_pb2.ModelInfo(**(base | fields))


def rendered(table: Table) -> list[list[str]]:
    out = io.StringIO()
    Console(file=out, width=200).print(table)
    return [line.split() for line in out.getvalue().splitlines()]


def test_unknown_estimate_and_context_read_as_such() -> None:
    known = message(
        name="a",
        max_context=32768,
        description="chat",
        vram=models_pb2.VramEstimate(gb=21.6, basis="vram_gb in the definition"),
        gpus_needed=2,
        running_on=["gpu-a (GPU 0,1)", "gpu-b (GPU 2,3)"],
    )
    unknown = message(name="b", vram=models_pb2.VramEstimate(basis="estimate unknown: set it"))
    cpu = message(name="c", engine="llama-cpp", gpus_needed=0, running_on=["gpu-c (cpu)"])
    found = [models_view.info(known), models_view.info(unknown), models_view.info(cpu)]
    assert found[0]["max_context"] == 32768 and found[0]["vram_gb"] == 21.6
    assert found[0]["gpus_needed"] == 2 and found[1]["gpus_needed"] is None
    assert found[0]["running_on"] == ["gpu-a (GPU 0,1)", "gpu-b (GPU 2,3)"]
    assert found[1]["running_on"] == [] and found[2]["gpus_needed"] == 0
    assert found[1]["max_context"] is None and found[1]["vram_gb"] is None
    assert found[1]["vram_basis"] == "estimate unknown: set it"
    assert rendered(models_view.table(found)) == [
        ["NAME", "ENGINE", "SOURCE", "CONTEXT", "VRAM/GPU", "GPUS", "NEEDED", "RUNNING", "ON",
         "DESCRIPTION"],
        ["a", "vllm", "hf:Org/Coder", "32768", "21.6", "GiB", "2", "gpu-a", "(GPU", "0,1),",
         "gpu-b", "(GPU", "2,3)", "chat"],
        ["b", "vllm", "hf:Org/Coder", "auto", "?", "?", "-"],
        ["c", "llama-cpp", "hf:Org/Coder", "auto", "?", "none", "gpu-c", "(cpu)"],
    ]  # fmt: skip


def test_show_has_the_command_and_environment_or_why_there_is_none() -> None:
    reply = models_pb2.GetModelResponse(
        model=message(aliases=["c"], vram=models_pb2.VramEstimate(basis="estimate unknown: x")),
        yaml="name: coder\nengine: vllm\n", deployment="GPU 0, port 8000",
        command="vllm serve --model=Org/Coder --port=8000",
        argv=["vllm", "serve", "--model=Org/Coder", "--port=8000"], env={"B": "2", "A": "1"},
    )  # fmt: skip
    found = models_view.detail(reply)
    assert found["env"] == {"A": "1", "B": "2"} and found["command_error"] is None
    text = models_view.show(found).splitlines()
    assert text[0] == "coder (aliases: c)"
    assert "  VRAM:         ? (estimate unknown: x)" in text
    assert text[text.index("Definition:") + 1 :][:2] == ["  name: coder", "  engine: vllm"]
    assert text[text.index("Command for GPU 0, port 8000:") + 1] == (
        "  vllm serve --model=Org/Coder --port=8000"
    )
    assert text[-3:] == ["Environment:", "  A=1", "  B=2"]

    reply.ClearField("command")
    reply.ClearField("env")
    reply.command_error = "llama-cpp-python cannot fetch revision 'v1' itself"
    text = models_view.show(models_view.detail(reply)).splitlines()
    assert text[-1] == "  none: llama-cpp-python cannot fetch revision 'v1' itself"


def test_convert_picks_the_form_or_says_why_not() -> None:
    vllm = models_pb2.ValidatedModel(model=message(), yaml="name: a\n",
                                     vllm_model_yaml="kind: VLLMModel\n")  # fmt: skip
    llama = models_pb2.ValidatedModel(
        model=message(name="b", engine="llama-cpp"),
        yaml="name: b\n",
        vllm_model_error="b runs on llama-cpp",
    )
    both = models_pb2.ValidateModelResponse(valid=True, models=[vllm, llama])
    assert models_view.converted(both, "gpufleet") == ("name: a\n---\nname: b\n", [])
    assert models_view.converted(both, "vllmmodel") == (
        "",
        ["b runs on llama-cpp; keep it in gpufleet's form (--to gpufleet)"],
    )
    one = models_pb2.ValidateModelResponse(valid=True, models=[vllm])
    assert models_view.converted(one, "vllmmodel") == ("kind: VLLMModel\n", [])
    bad = models_pb2.ValidateModelResponse(valid=False, problems=["f.yaml: engine: x", "f: y"])
    assert models_view.converted(bad, "gpufleet") == ("", ["f.yaml: engine: x", "f: y"])
    checked = models_view.checked("f.yaml", models_pb2.ValidateModelResponse(valid=False))
    assert checked["problems"] == ["f.yaml: not a valid model file"]
    assert checked["exit_code"] == 1


def running_message(**fields: Any) -> models_pb2.RunningModel:
    base: dict[str, Any] = {"node": "gpu-a", "model": "coder", "engine": "vllm", "gpus": [0, 1],
                            "state": "ready", "endpoint": "http://gpu-a:8000",
                            "project": "model-coder"}  # fmt: skip
    return models_pb2.RunningModel(**(base | fields))


def test_running_rows_say_gpus_state_and_endpoint_and_unknowns_as_such() -> None:
    ready = running_message()
    ready.since.FromSeconds(1_800_000_000)
    cpu = running_message(node="gpu-b", model="tiny", engine="llama-cpp", gpus=[],
                          state="failed", message="server: HTTP 503",
                          endpoint="http://gpu-b:8080")  # fmt: skip
    unknown = running_message(node="gpu-c", engine="", gpus=[], endpoint="", state="loading")
    found = [models_view.running(m) for m in (ready, cpu, unknown)]
    assert found[0] == {"node": "gpu-a", "model": "coder", "engine": "vllm", "gpus": [0, 1],
                        "state": "ready", "since": "2027-01-15T08:00:00Z",
                        "endpoint": "http://gpu-a:8000", "message": "",
                        "project": "model-coder"}  # fmt: skip
    assert found[1]["since"] is None and found[2]["engine"] is None
    rows = rendered(models_view.running_table(found))
    assert rows[0] == ["NODE", "MODEL", "ENGINE", "GPUS", "STATE", "SINCE", "ENDPOINT"]
    assert rows[1][:5] == ["gpu-a", "coder", "vllm", "0,1", "ready"]
    assert rows[1][-1] == "http://gpu-a:8000"
    assert rows[2] == ["gpu-b", "tiny", "llama-cpp", "cpu", "failed", "never",
                       "http://gpu-b:8080"]  # fmt: skip
    assert rows[3] == ["server:", "HTTP", "503"]
    assert rows[4] == ["gpu-c", "coder", "?", "-", "loading", "never", "-"]
