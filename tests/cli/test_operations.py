"""hubctl's operation output, driven by real protobuf messages from an in-process Hub API:
progress events in live output, stored events in `ops show`, `ops cancel` and its errors."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from rich.console import Console

from cli import convert, ops_view
from cli.main import main
from gpufleet.v1 import hub_pb2
from tests.cli.fake_hub import CancellingHub, FakeHub, event, operation, serve

Run = tuple[int, str, str]
Hubctl = Callable[..., Run]

STREAM = [
    event("drain", "nothing in flight"),
    event("start", "llm: pulling image", progress=True, percent=42.0),
    event("start", "llm: loading weights", progress=True),
    event("ready", "healthy"),
    event("done", "succeeded", node="", operation=operation()),
]
STORED = operation(dropped=3, events=STREAM[:4])


@pytest.fixture
def hubctl(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Hubctl:
    """hubctl(*argv, servicer=...) -> (exit status, stdout, stderr), in this process, against
    a fake hub (default: FakeHub(STORED, STREAM)); the hub's address reads HUB."""
    monkeypatch.setenv("GPUFLEET_INSECURE", "1")

    def run(*argv: str, servicer: FakeHub | None = None) -> Run:
        server, address = serve(servicer or FakeHub(STORED, STREAM))
        try:
            with pytest.raises(SystemExit) as exited:
                main(["--hub", address, *argv])
        finally:
            server.stop(None)
        out, err = capsys.readouterr()
        return int(exited.value.code or 0), out, err.replace(address, "HUB")

    return run


def test_watch_shows_progress_indented_under_its_step(hubctl: Hubctl) -> None:
    code, out, err = hubctl("ops", "watch", "op-1")
    assert (code, err) == (0, "")
    assert out.splitlines()[:5] == [
        "12:00:01 gpu-a            drain    nothing in flight",
        "12:00:01 gpu-a              start     42% llm: pulling image",
        "12:00:01 gpu-a              start    llm: loading weights",
        "12:00:01 gpu-a            ready    healthy",
        "12:00:01 operation        done     succeeded",
    ]
    assert "RECAP switch alpha (op-1)" in out


def test_progress_lines_are_dim_and_step_lines_are_not() -> None:
    step, progress = (ops_view.event_line(convert.operation_event(e)) for e in STREAM[:2])
    assert progress.style == "dim"
    assert step.style == "" and not any(span.style == "dim" for span in step.spans[1:])


def test_watch_json_prints_the_operation_once(hubctl: Hubctl) -> None:
    code, out, _ = hubctl("ops", "watch", "op-1", "--json")
    found = json.loads(out)
    assert code == 0 and found["status"] == "succeeded" and "events" not in found
    assert found["nodes"][0]["progress_dropped"] == 0


def test_show_prints_the_stored_events_after_the_recap(hubctl: Hubctl) -> None:
    code, out, err = hubctl("ops", "show", "op-1")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "succeeded: succeeded"
    recap_end = next(i for i, line in enumerate(lines) if "skipped=0" in line)  # the caption
    assert lines[recap_end + 1 :] == [
        "3 earlier progress events of gpu-a not kept",
        "12:00:01 gpu-a            drain    nothing in flight",
        "12:00:01 gpu-a              start     42% llm: pulling image",
        "12:00:01 gpu-a              start    llm: loading weights",
        "12:00:01 gpu-a            ready    healthy",
    ]


def test_show_json_has_events_and_dropped_counts(hubctl: Hubctl) -> None:
    code, out, _ = hubctl("ops", "show", "op-1", "--json")
    found = json.loads(out)
    assert code == 0 and found["nodes"][0]["progress_dropped"] == 3
    assert [(e["step"], e["progress"], e["percent"]) for e in found["events"]] == [
        ("drain", False, None), ("start", True, 42.0), ("start", True, None), ("ready", False, None)
    ]  # fmt: skip
    assert found["events"][0] == {
        "seq": 0, "at": "2026-11-30T12:00:01Z", "node": "gpu-a", "step": "drain",
        "message": "nothing in flight", "progress": False, "percent": None,
    }  # fmt: skip


def test_show_of_an_unknown_operation_is_one_line(hubctl: Hubctl) -> None:
    assert hubctl("ops", "show", "nope") == (1, "", "hubctl: no operation nope\n")


def test_cancel_prints_the_operation_as_it_ended(hubctl: Hubctl) -> None:
    running = CancellingHub(operation(status="running", result="running"), [])
    code, out, err = hubctl("ops", "cancel", "op-1", servicer=running)
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == "cancelled: cancelled"
    assert "gpu-a  cancelled  switched to alpha" in out
    assert "cancelled=1" in out  # the recap's counts
    code, out, _ = hubctl("ops", "cancel", "op-1", "--json", servicer=running)
    assert code == 0 and json.loads(out)["status"] == "cancelled"


def test_cancel_errors_are_one_line(hubctl: Hubctl) -> None:
    # A hub without CancelOperation yet answers UNIMPLEMENTED.
    assert hubctl("ops", "cancel", "op-1") == (
        1, "", "hubctl: the hub at HUB does not offer this yet: upgrade gpufleet-hub\n"
    )  # fmt: skip
    ended = CancellingHub(STORED, [])
    assert hubctl("ops", "cancel", "op-1", servicer=ended) == (
        1, "", "hubctl: op-1 already ended\n"
    )  # fmt: skip
    assert hubctl("ops", "cancel", "nope", servicer=ended) == (1, "", "hubctl: no operation nope\n")


def test_cancelled_results_are_styled() -> None:
    console = Console(force_terminal=True, color_system="standard", width=120)
    with console.capture() as captured:
        console.print(ops_view.recap(convert.operation(operation("cancelled", "cancelled"))))
    assert "\x1b[35mcancelled" in captured.get()


def test_an_operation_event_converts_without_optional_fields() -> None:
    bare = convert.operation_event(hub_pb2.OperationEvent(step="done"))
    assert bare == {"seq": 0, "at": None, "node": None, "step": "done", "message": "",
                    "progress": False, "percent": None}  # fmt: skip
    assert str(ops_view.event_line(bare)) == "--:--:-- operation        done     "


def test_node_text_is_never_markup() -> None:
    """A node's message or a configuration name with brackets prints as it is: no
    MarkupError ("internal error"), no style a node chose."""
    found = convert.operation(operation("failed", "failed"))
    found["configuration"] = "cfg[/bold]"
    found["nodes"][0]["message"] = "stat [/srv/x]: no such file [blink red]boo"
    found["nodes"][0]["node"] = "[red]gpu-a"
    console = Console(force_terminal=True, color_system="standard", width=200)
    with console.capture() as captured:
        console.print(ops_view.recap(found))
    out = captured.get()
    assert "stat [/srv/x]: no such file [blink red]boo" in out
    assert "[red]gpu-a" in out and "cfg[/bold]" in out
    assert "\x1b[5m" not in out  # no blink


def test_a_stop_recap_title_names_no_configuration_and_long_steps_keep_a_space() -> None:
    stop = operation()
    stop.kind, stop.configuration = "stop", ""
    console = Console(width=120)
    with console.capture() as captured:
        console.print(ops_view.recap(convert.operation(stop)))
    assert captured.get().splitlines()[0].rstrip() == "RECAP stop (op-1)"
    line = ops_view.event_line(convert.operation_event(
        event("compose up", "starting alpha", progress=True)))  # fmt: skip
    assert str(line).endswith("compose up starting alpha"), str(line)
