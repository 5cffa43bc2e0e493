"""gpufleet.settings: config files beneath the command line, and one clear line when wrong."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agent.main import run_parser
from gateway.main import parse_args as gateway_args
from gpufleet import settings
from hub.main import parse_args as hub_args
from tests.support.procs import REPO

CONFIGS = REPO / "packaging" / "config"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.yaml"
    path.write_text(text)
    return path


def agent_args(argv: list[str]) -> argparse.Namespace:
    return settings.parse_args(run_parser(), argv, Path("/nonexistent/agent.yaml"))


def test_file_values_become_defaults_and_flags_win(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "listen: 0.0.0.0:9000\nstate_dir: /srv/hub\nheartbeat_interval: 2\ngrace: 4.5\n"
        "log_level: debug\n",
    )
    args = hub_args(["--config", str(path)])
    assert args.listen == "0.0.0.0:9000"
    assert args.state_dir == Path("/srv/hub")
    assert args.heartbeat_interval == 2.0 and args.grace == 4.5
    assert args.log_level == "debug"
    args = hub_args(["--config", str(path), "--listen", "127.0.0.1:1", "--state-dir=/x"])
    assert args.listen == "127.0.0.1:1" and args.state_dir == Path("/x")
    assert args.heartbeat_interval == 2.0  # untouched by the flags


def test_lists_for_repeatable_options_and_flags_add(tmp_path: Path) -> None:
    path = write(tmp_path, "env: [HF_HOME=/models, LLM_PORT=8000]\nname: gpu-a\n")
    args = agent_args(["--config", str(path), "--env", "LLM_PORT=8001"])
    assert args.env == ["HF_HOME=/models", "LLM_PORT=8000", "LLM_PORT=8001"]
    assert args.name == "gpu-a"


def test_without_a_file_nothing_changes(tmp_path: Path) -> None:
    assert vars(agent_args([])) == {**vars(run_parser().parse_args([])), "config": None}


def test_empty_file_is_no_settings(tmp_path: Path) -> None:
    assert hub_args(["--config", str(write(tmp_path, "# nothing\n"))]).listen == "127.0.0.1:7443"


def test_new_options_are_settable_with_no_change_to_the_loader(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser(prog="demo")
    parser.add_argument("--insecure", action="store_true")
    parser.add_argument("--tls-cert", type=Path)
    parser.add_argument("--retries", type=int, default=3)
    path = write(tmp_path, "insecure: true\ntls_cert: /etc/pki/hub.pem\nretries: 5\n")
    args = settings.parse_args(parser, ["--config", str(path)], Path("/nonexistent"))
    assert args.insecure is True and args.tls_cert == Path("/etc/pki/hub.pem")
    assert args.retries == 5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "heartbeat-intervall: 3\n",
            r"unknown key 'heartbeat-intervall': did you mean heartbeat_interval\?",
        ),
        ("colour: blue\n", r"unknown key 'colour': known keys: listen, configs, http"),
        ("grace: -1\n", r"grace: invalid value '-1': must be greater than 0"),
        ("heartbeat_interval: soon\n", r"heartbeat_interval: invalid value 'soon'"),
        ("log_level: loud\n", r"log_level: 'loud' is not one of debug, info, warning, error"),
        ("listen: [a, b]\n", r"listen must be a single value, got a list"),
        ("http: yes\n", r"http must be a single value, got a boolean \(true\) \(quote it\)"),
        ("- listen\n", r"expected a mapping of option: value"),
        ("listen: [\n", r"at line 2: .*: fix the YAML syntax"),
        ("config: /etc/other.yaml\n", r"unknown key 'config'"),
    ],
)
def test_bad_files_stop_the_hub_with_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    result = subprocess.run(
        [sys.executable, "-m", "hub", "--config", str(path)],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"gpufleet-hub: {path}"), lines[0]
    assert re.search(message, lines[0]), lines[0]


def test_bad_types_in_agent_files(tmp_path: Path) -> None:
    path = write(tmp_path, "env: HF_HOME=/models\n")
    result = subprocess.run(
        [sys.executable, "-m", "agent", "--config", str(path)],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"gpufleet-agent: {path}: env must be a list, e.g. env: [a, b], got a str "
        "('HF_HOME=/models')"
    )


def test_missing_config_file_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agent", "probe", "--config", str(tmp_path / "nope.yaml")],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"gpufleet-agent probe: cannot read config file {tmp_path / 'nope.yaml'}: "
        "No such file or directory: fix the path given to --config"
    )


def test_probe_reads_the_agent_file_and_ignores_the_daemon_keys(tmp_path: Path) -> None:
    inventory = REPO / "configs" / "inventories" / "mi50x2.yaml"
    path = write(tmp_path, f"hub: hub.example:7443\nname: gpu-a\ninventory: {inventory}\n")
    result = subprocess.run(
        [sys.executable, "-m", "agent", "probe", "--json", "--config", str(path)],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert '"probe": "static"' in result.stdout


def uncommented(path: Path) -> str:
    """The file with every commented `#key: value` example switched on."""
    lines = []
    for line in path.read_text().splitlines():
        if re.match(r"#[a-z_]+:", line) or re.match(r"#  - ", line):
            line = line[1:]
        lines.append(line)
    return "\n".join(lines) + "\n"


def test_every_documented_key_of_the_shipped_files_is_valid(tmp_path: Path) -> None:
    hub = write(tmp_path, uncommented(CONFIGS / "hub.yaml"))
    args = hub_args(["--config", str(hub)])
    assert args.configs == Path("/etc/gpufleet/configs")
    assert args.models == Path("/etc/gpufleet/models")
    assert args.db == "postgresql+psycopg://gpufleet@db.example/gpufleet"

    agent = tmp_path / "agent.yaml"
    agent.write_text(uncommented(CONFIGS / "agent.yaml"))
    args = agent_args(["--config", str(agent)])
    assert args.env == ["HF_HOME=/srv/models", "LLM_PORT=8000"]

    gateway = tmp_path / "gateway.yaml"
    gateway.write_text(uncommented(CONFIGS / "gateway.yaml"))
    args = gateway_args(["--config", str(gateway)])
    assert args.routes == Path("/etc/gpufleet/routes.yaml") and args.open is False
    assert args.max_queue == 64 and args.max_body == 32 * 1024 * 1024


def documented(path: Path) -> set[str]:
    return set(re.findall(r"^#?([a-z_]+):", path.read_text(), re.M))


def test_the_shipped_files_document_every_option() -> None:
    """A new daemon option needs its (commented) default in packaging/config/."""
    assert documented(CONFIGS / "agent.yaml") == set(settings.options(run_parser()))
    hub_keys = set(vars(hub_args(["--config", "/dev/null"]))) - {"config"}
    assert documented(CONFIGS / "hub.yaml") == hub_keys
    gateway_keys = set(vars(gateway_args(["--config", "/dev/null"]))) - {"config"}
    assert documented(CONFIGS / "gateway.yaml") == gateway_keys


def test_shipped_gateway_defaults_are_the_built_in_ones() -> None:
    """Commented lines claim to be the defaults: switched on, they change nothing."""
    shipped = CONFIGS / "gateway.yaml"
    defaults = vars(gateway_args(["--config", "/dev/null"]))
    for line in shipped.read_text().splitlines():
        found = re.match(r"#([a-z_]+): (.*)$", line)
        if found and found[1] in ("listen", "open", "open_on_network", "max_queue", "max_body",
                                  "log_level"):  # fmt: skip
            value = defaults[found[1]]
            assert str(value).lower() == found[2], line


def run_gateway(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *argv],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip


def test_gateway_reads_its_file_flags_win_and_bad_files_are_one_line(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text("models: []\n")
    path = write(tmp_path, f"routes: {routes}\nlisten: 0.0.0.0:8080\nmax_queue: 3\n")
    args = gateway_args(["--config", str(path), "--max-queue", "5"])
    assert args.routes == routes and args.listen == "0.0.0.0:8080" and args.max_queue == 5
    # The file's values go through the same checks as flags.
    refused = run_gateway("--config", str(path))
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        "gpufleet-gateway: --routes has no API keys: add --open to serve the fixed table "
        "without keys"
    )
    for text, message in (
        ("max_queue: 0\n", "max_queue: invalid value '0': must be at least 1, got 0"),
        ("open: yes please\n", "open must be true or false, got a str ('yes please')"),
        ("default-modell: tiny\n", "unknown key 'default-modell': did you mean default_model?"),
    ):
        path.write_text(text)
        result = run_gateway("--config", str(path))
        assert result.returncode == 2
        assert result.stderr.strip() == f"gpufleet-gateway: {path}: {message}"


def test_gateway_token_precedence_matches_the_agent(tmp_path: Path) -> None:
    """--token-file, else --token, else the environment; a typed --token beats a file's
    token_file."""
    from gateway.main import read_token

    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    path = write(tmp_path, f"token_file: {token_file}\n")
    argv = ["--config", str(path)]
    assert read_token(gateway_args(argv), argv) == "from-file"
    argv = ["--config", str(path), "--token", "typed"]
    assert read_token(gateway_args(argv), argv) == "typed"
    argv = ["--config", str(path), "--token=typed", f"--token-file={token_file}"]
    assert read_token(gateway_args(argv), argv) == "from-file"
