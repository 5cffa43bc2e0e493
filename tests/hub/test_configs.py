"""Configurations: the shipped compose files load, and each kind of bad input is refused with
one line that names the file, the service and the field."""

from __future__ import annotations

import copy
import hashlib
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from hub.configs import (
    MAX_BYTES,
    ConfigError,
    Configuration,
    DrainProbe,
    HealthCheck,
    check_name,
    load_configuration,
    load_directory,
    parse_configuration,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SHIPPED = {"big-chat", "coder", "dual-chat", "image-chat"}
WHERE = Path("configs/coder.yaml")
VARIABLE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-([^}]*))?\}")

BASE: dict[str, Any] = {
    "x-gpufleet": {
        "description": "Qwen3 32B over two GPUs",
        "use_case": "Coding tasks with thinking mode",
        "services": {
            "llm": {
                "vram_gb": 38.5,
                "gpu_count": 2,
                "latency_class": "critical",
                "model": "Qwen/Qwen3-32B",
                "health": {"url": "http://127.0.0.1:${LLM_PORT:-8000}/health", "timeout": 600},
                "drain": {
                    "url": "http://127.0.0.1:${LLM_PORT:-8000}/metrics",
                    "metric": "vllm:num_requests_running",
                },
            },
            "ui": {
                "vram_gb": 12,
                "vram_budget": {"min_gb": 6},
                "health": {"url": "http://127.0.0.1:8188/system_stats"},
                "drain": "none",
            },
        },
    },
    "services": {
        "llm": {"image": "docker.io/vllm/vllm-openai:v0.10.0", "ipc": "host"},
        "ui": {"build": "./comfyui"},
    },
}


def parse(data: Any, name: str = "coder") -> Configuration:
    return parse_configuration(name, yaml.safe_dump(data, sort_keys=False), WHERE)


def expand_defaults(text: str) -> str:
    return VARIABLE.sub(lambda m: m.group(1) or "", text)


# -- the shipped configurations ----------------------------------------------------------------


def test_shipped_configurations_load_without_errors() -> None:
    configs, errors = load_directory(CONFIGS)
    assert errors == []
    assert set(configs) >= SHIPPED
    assert list(configs) == sorted(configs)
    assert not any(name.startswith("inventor") for name in configs)  # subdirectories are ignored
    for name, config in configs.items():
        assert config.name == name and config.path == CONFIGS / f"{name}.yaml"
        assert config.text == config.path.read_text() and "x-gpufleet" in config.text
        assert config.digest == hashlib.sha256(config.path.read_bytes()).hexdigest()


def test_big_chat_fields_parse_as_written() -> None:
    config = load_configuration(CONFIGS / "big-chat.yaml")
    assert config.use_case == "Maximum quality chat"
    (llm,) = config.services
    assert (llm.name, llm.gpu_count, llm.latency_class) == ("llm", 2, "critical")
    assert llm.isolation is True and llm.vram_budget_min_gb is None
    assert llm.vram_gb == 72 and llm.model.endswith("Llama-3.3-70B-Instruct-FP8-dynamic")
    assert llm.health == HealthCheck("http://127.0.0.1:${LLM_PORT:-8000}/health", 200, 900, 10)
    assert llm.drain == DrainProbe(
        "http://127.0.0.1:${LLM_PORT:-8000}/metrics", "vllm:num_requests_running", 300
    )


def test_shipped_services_as_written() -> None:
    configs, _ = load_directory(CONFIGS)
    coder = configs["coder"].services[0]
    assert (coder.gpu_count, coder.model) == (2, "Qwen/Qwen3-32B")
    assert "--reasoning-parser=qwen3" in configs["coder"].text
    dual = {s.name: s for s in configs["dual-chat"].services}
    assert {s.gpu_count for s in dual.values()} == {1}
    assert dual["chat-8b"].health.url != dual["chat-14b"].health.url
    image = {s.name: s for s in configs["image-chat"].services}
    assert set(image) == {"llm", "comfyui", "embeddings"}
    assert image["comfyui"].drain is None and image["comfyui"].vram_budget_min_gb == 6
    assert image["comfyui"].health.url.endswith("/system_stats")
    assert image["embeddings"].model == "BAAI/bge-m3" and image["embeddings"].drain is None


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_compose_matches_its_metadata(name: str) -> None:
    """GPU reservations agree with gpu_count; health and drain URLs hit a published port."""
    config = load_configuration(CONFIGS / f"{name}.yaml")
    compose = yaml.safe_load(config.text)
    for spec in config.services:
        service = compose["services"][spec.name]
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
        assert len(device["device_ids"]) == spec.gpu_count
        published = {expand_defaults(p).split(":")[0] for p in service["ports"]}
        for url in [spec.health.url] + ([spec.drain.url] if spec.drain else []):
            assert expand_defaults(url).split(":")[2].split("/")[0] in published


# -- parsing ------------------------------------------------------------------------------------


def test_defaults_and_unexpanded_variables() -> None:
    config = parse(BASE)
    assert (config.name, config.path) == ("coder", WHERE)
    llm, ui = config.services
    assert llm.health == HealthCheck("http://127.0.0.1:${LLM_PORT:-8000}/health", 200, 600, 5)
    assert llm.drain is not None and llm.drain.timeout_s == 120
    assert (ui.gpu_count, ui.latency_class, ui.isolation, ui.model) == (1, "normal", False, "")
    assert (ui.vram_budget_min_gb, ui.drain, llm.vram_budget_min_gb) == (6, None, None)


@pytest.mark.parametrize("drain", [None, "none", "absent"])
def test_no_drain_probe(drain: str | None) -> None:
    data = copy.deepcopy(BASE)
    llm = data["x-gpufleet"]["services"]["llm"]
    if drain == "absent":
        del llm["drain"]
    else:
        llm["drain"] = drain
    assert parse(data).services[0].drain is None


def test_text_and_digest_are_the_exact_bytes(tmp_path: Path) -> None:
    raw = yaml.safe_dump(BASE).replace("\n", "\r\n").encode()
    (tmp_path / "coder.yml").write_bytes(raw)
    config = load_configuration(tmp_path / "coder.yml")
    assert config.text.encode() == raw and "\r\n" in config.text
    assert config.digest == hashlib.sha256(raw).hexdigest()


def test_zero_vram_only_without_gpus() -> None:
    data = copy.deepcopy(BASE)
    data["x-gpufleet"]["services"]["ui"].update(gpu_count=0, vram_gb=0)
    del data["x-gpufleet"]["services"]["ui"]["vram_budget"]
    assert parse(data).services[1].vram_gb == 0


Mutation = Callable[[dict[str, Any]], None]


def meta(service: str, **fields: Any) -> Mutation:
    def apply(data: dict[str, Any]) -> None:
        data["x-gpufleet"]["services"][service].update(fields)

    return apply


def nested(service: str, section: str, **fields: Any) -> Mutation:
    def apply(data: dict[str, Any]) -> None:
        data["x-gpufleet"]["services"][service][section].update(fields)

    return apply


def drop(*keys: str) -> Mutation:
    def apply(data: dict[str, Any]) -> None:
        node = data
        for key in keys[:-1]:
            node = node[key]
        del node[keys[-1]]

    return apply


def setting(value: Any, *keys: str) -> Mutation:
    def apply(data: dict[str, Any]) -> None:
        node = data
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value

    return apply


def llm_meta() -> dict[str, Any]:
    return copy.deepcopy(BASE["x-gpufleet"]["services"]["llm"])


XS = "x-gpufleet.services"
LLM = f"{XS}.llm"
ALLOWED = "vram_gb, gpu_count, latency_class, isolation, vram_budget, model, health, drain"
BAD: list[tuple[str, Mutation, str]] = [
    ("no x-gpufleet", drop("x-gpufleet"),
     "x-gpufleet: is missing: add it with description, use_case and services"),
    ("x-gpufleet list", setting(["a"], "x-gpufleet"),
     "x-gpufleet: must be a mapping with description, use_case, services, got a list"),
    ("top typo", drop("x-gpufleet", "use_case"),
     "x-gpufleet.use_case: is required: add a short phrase such as 'Maximum quality chat'"),
    ("top unknown", setting("x", "x-gpufleet", "usecase"),
     "x-gpufleet.usecase: unknown key (did you mean 'use_case'?);"
     " allowed: description, use_case, services"),
    ("empty description", setting(" ", "x-gpufleet", "description"),
     "x-gpufleet.description: must be a non-empty string, got ' '"),
    ("meta services list", setting([], "x-gpufleet", "services"),
     "x-gpufleet.services: must be a mapping from each compose service name to its metadata,"
     " got an empty list"),
    ("typo vram_gbs", meta("llm", vram_gbs=4),
     f"{LLM}.vram_gbs: unknown key (did you mean 'vram_gb'?); allowed: {ALLOWED}"),
    ("unknown key", meta("llm", replicas=4), f"{LLM}.replicas: unknown key; allowed: {ALLOWED}"),
    ("vram missing", drop("x-gpufleet", "services", "llm", "vram_gb"),
     f"{LLM}.vram_gb: is required: add the VRAM estimate per GPU in GiB, e.g. 24"),
    ("vram string", meta("llm", vram_gb="lots"),
     f"{LLM}.vram_gb: must be a number > 0, got 'lots'"),
    ("vram zero", meta("llm", vram_gb=0), f"{LLM}.vram_gb: must be a number > 0, got 0"),
    ("vram bool", meta("llm", vram_gb=True), f"{LLM}.vram_gb: must be a number > 0, got True"),
    ("vram inf", meta("llm", vram_gb=float("inf")),
     f"{LLM}.vram_gb: must be a number > 0, got inf"),
    ("gpu_count float", meta("llm", gpu_count=1.5),
     f"{LLM}.gpu_count: must be a whole number >= 0, got 1.5"),
    ("gpu_count negative", meta("llm", gpu_count=-1),
     f"{LLM}.gpu_count: must be a whole number >= 0, got -1"),
    ("gpu_count string", meta("llm", gpu_count="2"),
     f"{LLM}.gpu_count: must be a whole number >= 0, got '2'"),
    ("latency class", meta("llm", latency_class="urgent"),
     f"{LLM}.latency_class: must be critical | normal | background, got 'urgent'"),
    ("isolation", meta("llm", isolation="yes"),
     f"{LLM}.isolation: must be true or false, got 'yes'"),
    ("model", meta("llm", model=42), f"{LLM}.model: must be a string, got 42"),
    ("budget typo", meta("ui", vram_budget={"min": 3}),
     f"{XS}.ui.vram_budget.min: unknown key (did you mean 'min_gb'?); allowed: min_gb"),
    ("budget missing", meta("ui", vram_budget={}),
     f"{XS}.ui.vram_budget.min_gb: is required:"
     " add the least VRAM in GiB the service can run with"),
    ("budget above estimate", meta("ui", vram_budget={"min_gb": 20}),
     f"{XS}.ui.vram_budget.min_gb: must not exceed vram_gb (12), got 20"),
    ("not in services", lambda d: d["x-gpufleet"]["services"].update(llmm=llm_meta()),
     f"{XS}.llmm: no such service under services: (llm, ui); fix the name or remove it"),
    ("no metadata", lambda d: d["services"].update(embeddings={"image": "infinity"}),
     "services.embeddings: has no metadata: add x-gpufleet.services.embeddings"
     " with vram_gb and health"),
    ("health missing", drop("x-gpufleet", "services", "llm", "health"),
     f"{LLM}.health: is required: add a mapping with at least url: http://127.0.0.1:PORT/health"),
    ("health string", meta("llm", health="http://127.0.0.1:8000/health"),
     f"{LLM}.health: must be a mapping with url, expect_status, timeout, interval,"
     " got 'http://127.0.0.1:8000/health'"),
    ("health typo", nested("llm", "health", timout=5),
     f"{LLM}.health.timout: unknown key (did you mean 'timeout'?);"
     " allowed: url, expect_status, timeout, interval"),
    ("health url missing", drop("x-gpufleet", "services", "ui", "health", "url"),
     f"{XS}.ui.health.url: is required: add an http(s) URL"),
    ("url scheme", nested("llm", "health", url="ftp://127.0.0.1/health"),
     f"{LLM}.health.url: must be an http:// or https:// URL with a host,"
     " got 'ftp://127.0.0.1/health'"),
    ("url no host", nested("llm", "health", url="http:///health"),
     f"{LLM}.health.url: must be an http:// or https:// URL with a host, got 'http:///health'"),
    ("url bad port", nested("llm", "health", url="http://127.0.0.1:${PORT:-eighty}/health"),
     f"{LLM}.health.url: must be an http:// or https:// URL with a host,"
     " got 'http://127.0.0.1:${PORT:-eighty}/health'"),
    ("url variable syntax", nested("llm", "health", url="http://127.0.0.1:${PORT:?unset}/health"),
     f"{LLM}.health.url: use variables as ${{NAME}} or ${{NAME:-default}},"
     " got 'http://127.0.0.1:${PORT:?unset}/health'"),
    ("negative timeout", nested("llm", "health", timeout=-5),
     f"{LLM}.health.timeout: must be a number > 0, got -5"),
    ("timeout string", nested("llm", "health", timeout="soon"),
     f"{LLM}.health.timeout: must be a number > 0, got 'soon'"),
    ("interval above timeout", nested("llm", "health", interval=900),
     f"{LLM}.health.interval: must not exceed timeout (600), got 900"),
    ("expect_status", nested("llm", "health", expect_status=99),
     f"{LLM}.health.expect_status: must be a whole number from 100 to 599, got 99"),
    ("drain word", meta("llm", drain="off"),
     f"{LLM}.drain: must be a mapping with url and metric, or none, got 'off'"),
    ("drain typo", nested("llm", "drain", metrics="x"),
     f"{LLM}.drain.metrics: unknown key (did you mean 'metric'?); allowed: url, metric, timeout"),
    ("drain metric missing", drop("x-gpufleet", "services", "llm", "drain", "metric"),
     f"{LLM}.drain.metric: is required: add a Prometheus metric such as vllm:num_requests_running"),
    ("drain metric name", nested("llm", "drain", metric="requests running"),
     f"{LLM}.drain.metric: must be a Prometheus metric name, got 'requests running'"),
    ("drain timeout", nested("llm", "drain", timeout=0),
     f"{LLM}.drain.timeout: must be a number > 0, got 0"),
    ("drain url", nested("llm", "drain", url="127.0.0.1:8000/metrics"),
     f"{LLM}.drain.url: must be an http:// or https:// URL with a host,"
     " got '127.0.0.1:8000/metrics'"),
    ("no services", drop("services"),
     "services: must be a non-empty mapping of compose services, got nothing"),
    ("empty services", setting({}, "services"),
     "services: must be a non-empty mapping of compose services, got an empty mapping"),
    ("no image", setting({"ipc": "host"}, "services", "llm"),
     "services.llm: needs an image: (a string) or a build: section"),
    ("project name", setting("other", "name"),
     "name: must be 'coder' (the file name) or left out, got 'other'"),
]  # fmt: skip


@pytest.mark.parametrize(("mutate", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_one_clear_line(mutate: Mutation, message: str) -> None:
    data = copy.deepcopy(BASE)
    mutate(data)
    with pytest.raises(ConfigError) as caught:
        parse(data)
    assert str(caught.value) == f"{WHERE}: {message}"
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("services: [\n", "invalid YAML at line 2, column 1: expected the node content,"
         " but found '<stream end>'"),
        ("x-gpufleet:\n  description: a\n   use_case: b\n",
         "invalid YAML at line 3, column 12: mapping values are not allowed here"),
        ("services:\n\tllm: {}\n",
         "invalid YAML at line 2, column 1: found character '\\t' that cannot start any token"),
        ("", "must be a compose file (a mapping with services:), got nothing"),
        ("- llm\n", "must be a compose file (a mapping with services:), got a list"),
    ],
)  # fmt: skip
def test_bad_yaml_names_line_and_column(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_configuration("coder", text, WHERE)
    assert str(caught.value) == f"{WHERE}: {message}"


BAD_NAMES = ["../evil", "Big Chat", "", "-chat", "big.chat", "a" * 64, "chat/../x", "ümlaut"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="is invalid: use 1 to 63 lowercase letters"):
        check_name(name)
    with pytest.raises(ConfigError) as caught:
        parse(BASE, name=name)
    assert str(caught.value) == (
        f"{WHERE}: configuration name {name!r} is invalid: use 1 to 63 lowercase letters,"
        " digits, '-' or '_', starting with a letter or digit; rename the file"
    )


@pytest.mark.parametrize("name", ["big-chat", "a", "image_chat2", "0" + "x" * 62])
def test_good_names(name: str) -> None:
    assert check_name(name) == name


# -- files and directories ---------------------------------------------------------------------


def write(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_a_bad_file_does_not_hide_the_good_ones(tmp_path: Path) -> None:
    write(tmp_path / "zeta.yaml", BASE)
    write(tmp_path / "alpha.yml", BASE)
    broken = copy.deepcopy(BASE)
    broken["x-gpufleet"]["services"]["llm"]["vram_gbs"] = 4
    write(tmp_path / "beta.yaml", broken)
    (tmp_path / "gamma.yaml").write_text("services: [\n")
    write(tmp_path / "Big Chat.yaml", BASE)
    (tmp_path / "inventories").mkdir()
    write(tmp_path / "inventories" / "host.yaml", {"gpus": []})
    write(tmp_path / ".editor-backup.yaml", {"gpus": []})
    (tmp_path / "README.md").write_text("not a configuration\n")
    configs, errors = load_directory(tmp_path)
    assert list(configs) == ["alpha", "zeta"]
    assert [str(e).split(":")[0] for e in errors] == [
        str(tmp_path / n) for n in ("Big Chat.yaml", "beta.yaml", "gamma.yaml")
    ]
    assert "x-gpufleet.services.llm.vram_gbs: unknown key" in str(errors[1])


def test_two_files_with_one_name(tmp_path: Path) -> None:
    write(tmp_path / "chat.yaml", BASE)
    write(tmp_path / "chat.yml", BASE)
    configs, errors = load_directory(tmp_path)
    assert configs["chat"].path == tmp_path / "chat.yaml"
    assert [str(e) for e in errors] == [
        f"{tmp_path / 'chat.yml'}: chat.yaml already defines 'chat'; keep one of the two"
    ]


def test_missing_directory_says_to_pass_configs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_directory(tmp_path / "nowhere")
    assert str(caught.value) == (
        f"{tmp_path / 'nowhere'}: no such configurations directory; pass --configs DIR"
    )


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.yaml: cannot read: No such file"):
        load_configuration(tmp_path / "missing.yaml")
    (tmp_path / "latin.yaml").write_bytes(b"x-gpufleet:\n  description: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"latin\.yaml: not UTF-8 \(byte 30\); save it as UTF-8"):
        load_configuration(tmp_path / "latin.yaml")


# -- hostile files: bounded before and while parsing ------------------------------------------

BOMB = "\n".join(
    ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    + [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]" for i in range(8)]
)  # "billion laughs": 9 levels of ten, 10^9 values once expanded, 1 KB of text


def valid_text() -> str:
    return yaml.safe_dump(BASE, sort_keys=False)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BOMB, r"refused: expands to more than 100,000 values through its aliases"),
        ("a: " + "[" * 5000 + "]" * 5000, r"refused: nests deeper than 32 levels at line 1"),
        ("a:\n" + "".join(f"{' ' * 2 * i}  k:\n" for i in range(40)), r"nests deeper than 32"),
        ("a: " + "x" * MAX_BYTES, r"refused: 262,147 bytes, larger than the 256 KiB"),
        ("a: b\x00", r"invalid YAML: unacceptable character #x0000"),
    ],
    ids=["alias bomb", "deep flow nesting", "deep block nesting", "too large", "NUL"],
)
def test_hostile_text_is_refused_in_one_line(text: str, message: str) -> None:
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        parse_configuration("coder", text, WHERE)
    took = time.monotonic() - started
    line = str(caught.value)
    assert "\n" not in line and line.startswith(f"{WHERE}: ")
    assert re.search(message, line), line
    print(f"refused in {took * 1000:.0f} ms: {line[:100]}")


def test_aliases_within_bounds_still_load() -> None:
    text = (
        valid_text() + "x-defaults: &defaults {restart: always}\nx-more: [*defaults, *defaults]\n"
    )
    assert parse_configuration("coder", text, WHERE).services


def test_hostile_files_stay_contained_to_their_own_line(tmp_path: Path) -> None:
    """A directory with every kind of hostile file still loads its good configurations."""
    write(tmp_path / "alpha.yaml", BASE)
    (tmp_path / "bomb.yaml").write_text(BOMB)
    (tmp_path / "deep.yaml").write_text("a: " + "[" * 100_000 + "]" * 100_000)
    (tmp_path / "huge.yaml").write_bytes(b"a: " + b"x" * (4 * MAX_BYTES))
    (tmp_path / "latin.yaml").write_bytes(b"x-gpufleet:\n  description: caf\xe9\n")
    write(tmp_path / "zeta.yaml", BASE)
    configs, errors = load_directory(tmp_path)
    assert list(configs) == ["alpha", "zeta"]
    lines = [str(e) for e in errors]
    assert [line.split(":")[0] for line in lines] == [
        str(tmp_path / n) for n in ("bomb.yaml", "deep.yaml", "huge.yaml", "latin.yaml")
    ]
    assert all("\n" not in line for line in lines)
    assert "larger than the 256 KiB" in lines[2] and "not UTF-8 (byte 30)" in lines[3]


# -- every problem of a file, one line each ----------------------------------------------------


def test_every_problem_is_reported_one_line_each() -> None:
    """Four distinct problems in four places: four lines, in file order, none hiding another."""
    data = copy.deepcopy(BASE)
    data["x-gpufleet"]["services"]["llm"].update(vram_gbs=4, latency_class="critcal")
    del data["x-gpufleet"]["services"]["llm"]["vram_gb"]
    data["x-gpufleet"]["services"]["ui"]["health"]["timeout"] = -1
    data["services"]["ui"] = {"ipc": "host"}
    with pytest.raises(ConfigError) as caught:
        parse(data)
    assert caught.value.problems == (
        f"{WHERE}: services.ui: needs an image: (a string) or a build: section",
        f"{WHERE}: {LLM}.vram_gbs: unknown key (did you mean 'vram_gb'?); allowed: {ALLOWED}",
        f"{WHERE}: {LLM}.latency_class: must be critical | normal | background, got 'critcal'"
        " (did you mean 'critical'?)",
        f"{WHERE}: {XS}.ui.health.timeout: must be a number > 0, got -1",
    )
    assert str(caught.value) == "\n".join(caught.value.problems)


def test_a_misspelt_service_is_one_problem_with_a_guess() -> None:
    data = copy.deepcopy(BASE)
    data["x-gpufleet"]["services"]["lm"] = data["x-gpufleet"]["services"].pop("llm")
    with pytest.raises(ConfigError) as caught:
        parse(data)
    assert caught.value.problems == (
        f"{WHERE}: {XS}.lm: no such service under services: (llm, ui); did you mean 'llm'? fix it",
    )


def test_a_bad_section_stops_only_the_checks_under_it() -> None:
    data = copy.deepcopy(BASE)
    data["x-gpufleet"]["services"]["llm"]["health"] = "http://127.0.0.1:8000/health"
    data["x-gpufleet"]["services"]["ui"]["drain"] = {"url": "127.0.0.1", "metric": "a b"}
    data["x-gpufleet"]["description"] = ""
    data["name"] = "other"
    with pytest.raises(ConfigError) as caught:
        parse(data)
    assert [line.split(": ")[1] for line in caught.value.problems] == [
        "name", "x-gpufleet.description", f"{LLM}.health",
        f"{XS}.ui.drain.metric", f"{XS}.ui.drain.url",
    ]  # fmt: skip


def test_a_bad_name_and_bad_content_are_both_reported() -> None:
    data = copy.deepcopy(BASE)
    data["x-gpufleet"]["services"]["llm"]["gpu_count"] = "2"
    with pytest.raises(ConfigError) as caught:
        parse(data, name="Big Chat")
    first, second = caught.value.problems
    assert "configuration name 'Big Chat' is invalid" in first and "rename the file" in first
    assert second == f"{WHERE}: {LLM}.gpu_count: must be a whole number >= 0, got '2'"


def test_many_problems_are_capped_with_a_count() -> None:
    data = copy.deepcopy(BASE)
    for i in range(70):
        data["x-gpufleet"]["services"]["llm"][f"extra{i}"] = i
    with pytest.raises(ConfigError) as caught:
        parse(data)
    lines = caught.value.problems
    assert len(lines) == 51 and lines[-1] == (
        f"{WHERE}: 20 more problems not shown: fix the ones above first"
    )


def test_a_directory_lists_a_bad_file_as_its_first_problem_and_a_count(tmp_path: Path) -> None:
    data = copy.deepcopy(BASE)
    data["x-gpufleet"]["services"]["llm"].update(replicas=2, isolation="yes")
    write(tmp_path / "coder.yaml", data)
    configs, errors = load_directory(tmp_path)
    assert configs == {}
    assert [str(e) for e in errors] == [
        f"{tmp_path / 'coder.yaml'}: {LLM}.replicas: unknown key; allowed: {ALLOWED}"
        f" (1 more: hubctl configs validate {tmp_path / 'coder.yaml'})"
    ]


def test_problems_survive_the_trip_from_a_worker() -> None:
    """The hub parses in a worker process: every problem comes back, not the first only."""
    import asyncio

    from hub.work import Lane

    data = copy.deepcopy(BASE)
    data["x-gpufleet"]["services"]["llm"].update(replicas=2, isolation="yes")
    text = yaml.safe_dump(data)

    async def main() -> ConfigError:
        lane = Lane("tests", workers=1, waiting=0)
        try:
            with pytest.raises(ConfigError) as caught:
                await lane.run(parse_configuration, "coder", text, WHERE, limit_s=30)
            return caught.value
        finally:
            lane.close()

    error = asyncio.run(main())
    assert len(error.problems) == 2 and str(error) == "\n".join(error.problems)
