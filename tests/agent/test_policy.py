"""The agent's compose policy: one test per rule, the setting that widens it, and the store
refusing before it writes anything."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.compose import Podman
from agent.probes import NoProbe
from agent.projects import ProjectError, ProjectStore
from agent.tasks.context import TaskContext
from gpufleet.policy import Policy, refusals, warnings
from gpufleet.v1 import agent_link_pb2 as pb
from gpufleet.v1 import types_pb2
from tests.agent.support import run_task
from tests.agent.test_assignments import ScriptedPodman
from tests.support.procs import REPO

CONFIG = "/etc/gpufleet/agent.yaml"


def lines(service: dict[str, Any], policy: Policy | None = None,
          env: dict[str, str] | None = None, base: Path | None = None) -> list[str]:  # fmt: skip
    document = {"services": {"llm": {"image": "x", **service}}}
    found = refusals(document, policy or Policy(), env if env is not None else {}, base)
    return [refusal.line(CONFIG) for refusal in found]


@pytest.mark.parametrize(
    ("service", "line", "widened"),
    [
        ({"privileged": True}, "privileged: true", Policy(allow_privileged=True)),
        ({"ipc": "host"}, "ipc: host", Policy(allow_ipc_host=True)),
        ({"pid": "host"}, "pid: host", Policy(allow_pid_host=True)),
        ({"network_mode": "host"}, "network_mode: host", Policy(allow_network_host=True)),
        ({"userns_mode": "host"}, "userns_mode: host", Policy(allow_privileged=True)),
        ({"uts": "host"}, "uts: host", Policy(allow_privileged=True)),
        ({"ipc": "container:other"}, "ipc: container:other", Policy(allow_privileged=True)),
        ({"cap_add": ["sys_admin"]}, "cap_add: sys_admin",
         Policy(allow_capabilities=("CAP_SYS_ADMIN",))),
        ({"devices": ["/dev/sda:/dev/sda"]}, "devices: /dev/sda:/dev/sda",
         Policy(allow_devices=("/dev/sda",))),
        ({"device_cgroup_rules": ["c 8:* rmw"]}, "device_cgroup_rules",
         Policy(allow_privileged=True)),
        ({"security_opt": ["seccomp=unconfined"]}, "security_opt: seccomp=unconfined",
         Policy(allow_privileged=True)),
        ({"security_opt": ["label:disable"]}, "security_opt: label:disable",
         Policy(allow_privileged=True)),
        ({"runtime": "/tmp/evil-runc"}, "runtime: /tmp/evil-runc", Policy(allow_privileged=True)),
        ({"volumes": ["/etc:/host-etc:ro"]}, "a bind mount of /etc",
         Policy(allow_bind_roots=("/etc",))),
        ({"volumes": [{"type": "bind", "source": "/root", "target": "/r"}]},
         "a bind mount of /root", Policy(allow_bind_roots=("/",))),
        ({"x-podman.rootfs": "/"}, "x-podman.rootfs", Policy(allow_privileged=True)),
    ],
)  # fmt: skip
def test_each_rule_refuses_by_default_naming_service_key_and_setting(
    service: dict[str, Any], line: str, widened: Policy
) -> None:
    [found] = lines(service)
    assert found.startswith(f"service llm: {line} is not allowed on this host: set allow_")
    assert found.endswith(f" in {CONFIG}")
    assert lines(service, widened) == []


def test_the_line_names_the_exact_setting() -> None:
    assert lines({"ipc": "host"}) == [
        f"service llm: ipc: host is not allowed on this host: set allow_ipc_host: true in {CONFIG}"
    ]
    assert lines({"cap_add": ["NET_ADMIN"]})[0].endswith(
        f"set allow_capabilities: [NET_ADMIN] in {CONFIG}"
    )


def test_what_gpu_servers_need_is_allowed() -> None:
    service = {
        "devices": ["/dev/nvidia0", "/dev/nvidiactl:/dev/nvidiactl:rwm", "/dev/dri/renderD128",
                    "/dev/kfd", "nvidia.com/gpu=0", "nvidia.com/gpu=all", "amd.com/gpu=1"],
        "volumes": ["hf-cache:/root/.cache/huggingface", "/tmp/anonymous-only"],
        "ipc": "shareable", "network_mode": "bridge", "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "deploy": {"resources": {"reservations": {"devices": [
            {"driver": "nvidia", "device_ids": ["0", "GPU-1234abcd"], "capabilities": ["gpu"]}]}}},
    }  # fmt: skip
    assert lines(service) == []


def test_bind_roots_resolve_relative_paths_and_symlinks(tmp_path: Path) -> None:
    models = tmp_path / "models"
    (models / "llama").mkdir(parents=True)
    (models / "escape").symlink_to("/etc")
    project = tmp_path / "state" / "projects" / "alpha"
    project.mkdir(parents=True)
    policy = Policy(allow_bind_roots=(str(models),))
    assert lines({"volumes": [f"{models}/llama:/m:ro"]}, policy, base=project) == []
    assert lines({"volumes": [f"{models}/escape:/m"]}, policy, base=project)  # symlink out
    assert lines({"volumes": [f"{models}/../models2:/m"]}, policy, base=project)
    # Relative to the project dir: ../../ is the agent's state dir with its key.
    assert lines({"volumes": ["../../:/state"]}, policy, base=project)
    assert lines({"env_file": ["../../tls/agent.key"]}, policy, base=project)
    assert lines({"build": {"context": "../.."}}, policy, base=project)
    assert lines({"build": "https://github.com/example/image.git"}, policy) == []


def test_variables_expand_as_on_the_host_and_unknown_forms_are_refused(tmp_path: Path) -> None:
    policy = Policy(allow_bind_roots=(str(tmp_path),))
    assert lines({"volumes": ["${CACHE}:/c"]}, policy, env={"CACHE": str(tmp_path)}) == []
    assert lines({"volumes": ["${CACHE:-/etc}:/c"]}, policy, env={}) != []
    # $HOME is expanded by podman-compose but not by ${...} rules: never guessed.
    [found] = lines({"volumes": ["$HOME/.ssh:/k"]}, policy, env={"HOME": "/root"})
    assert "write variables as ${NAME}" in found
    assert lines({"ipc": "${IPC:-host}"}, env={}) != []


def test_top_level_sections_that_reach_the_host_are_checked() -> None:
    document = {
        "include": ["/etc/other-compose.yaml"],
        "x-podman": {"pod_args": ["--privileged"]},
        "services": {"llm": {"image": "x", "extends": {"file": "/x.yaml", "service": "a"}}},
        "volumes": {"sneaky": {"driver_opts": {"type": "none", "o": "bind", "device": "/etc"}}},
        "secrets": {"key": {"file": "/root/.ssh/id_ed25519"}},
    }
    found = [r.line(CONFIG) for r in refusals(document, Policy(), {})]
    assert len(found) == 5, found
    assert found[0] == "include is not allowed on this host: put every service in this one file"
    assert any("extends from a file" in line for line in found)


def test_gpu_ids_are_plain_ids() -> None:
    bad = {
        "deploy": {
            "resources": {
                "reservations": {
                    "devices": [
                        {
                            "driver": "nvidia",
                            "device_ids": ["0 --privileged"],
                            "capabilities": ["gpu"],
                        }
                    ]
                }
            }
        }
    }
    assert "GPU device id" in lines(bad)[0]  # fmt: skip


def text_of(document: dict[str, Any]) -> tuple[str, str]:
    text = yaml.safe_dump(document)
    return text, hashlib.sha256(text.encode()).hexdigest()


def test_the_store_refuses_before_writing_anything(tmp_path: Path) -> None:
    store = ProjectStore(tmp_path, "none", Policy(config_file="/etc/agent-here.yaml"), {})
    text, digest = text_of({"services": {"web": {"image": "x", "privileged": True}}})
    with pytest.raises(ProjectError) as refused:
        store.write("alpha", text, digest)
    assert str(refused.value) == (
        "project alpha: service web: privileged: true is not allowed on this host: "
        "set allow_privileged: true in /etc/agent-here.yaml"
    )
    assert not (tmp_path / "projects" / "alpha").exists()
    # The same file on a host that allows it is written.
    ProjectStore(tmp_path, "none", Policy(allow_privileged=True), {}).write("alpha", text, digest)
    assert store.refused_on_disk("alpha").startswith("project alpha: service web: privileged")


def test_validate_warns_about_what_the_default_policy_refuses() -> None:
    shipped = yaml.safe_load((REPO / "configs" / "big-chat.yaml").read_text())
    assert warnings(shipped) == [
        "service llm: ipc: host would be refused by an agent's default policy: hosts that run "
        "it need allow_ipc_host: true in their agent config (the packaged agent.yaml sets it)"
    ]
    fixture = yaml.safe_load((REPO / "tests/fixtures/switch-configs/alpha.yaml").read_text())
    [bind] = warnings(fixture)
    assert "a bind mount of ${METRICS_DIR}" in bind and "allow_bind_roots" in bind


def test_apply_recreates_nothing_from_a_file_the_host_now_refuses(tmp_path: Path) -> None:
    """A project started under a wider policy: after the host narrowed it, applying GPU
    assignments refuses instead of recreating from the stored file."""
    text, digest = text_of({"services": {"web": {"image": "x", "ipc": "host"}}})
    ProjectStore(tmp_path, "none", Policy(allow_ipc_host=True), {}).write("alpha", text, digest)
    podman = ScriptedPodman({"web": "c1"})
    narrowed = ProjectStore(tmp_path, "none", Policy(), {})
    context = TaskContext.create(narrowed, Podman("gpu-a", run=podman), NoProbe(), {})
    request = pb.ApplyAssignment(
        project="alpha", services=[pb.ServiceAssignment(service="web", here=True, gpus=[0])]
    )
    result = run_task(context, pb.TaskRequest(task_id="t1", apply_assignment=request))
    assert result.status == types_pb2.TASK_STATUS_FAILED
    assert result.message.startswith(
        "project alpha: service web: ipc: host is not allowed on this host: "
        "set allow_ipc_host: true in /etc/gpufleet/agent.yaml"
    )
    assert podman.calls == []  # nothing recreated


def stored(tmp_path: Path, service: dict[str, Any], env: dict[str, str] | None = None,
           policy: Policy | None = None, top: dict[str, Any] | None = None) -> str:  # fmt: skip
    """The store's refusal of a one-service document ("" when written), as the hub sends it."""
    text, digest = text_of({"services": {"llm": {"image": "x", **service}}, **(top or {})})
    try:
        ProjectStore(tmp_path, "none", policy or Policy(), env or {}).write("alpha", text, digest)
    except ProjectError as exc:
        return str(exc)
    return ""


@pytest.mark.parametrize(
    "service",
    [
        {"${U:-privileged}": True},  # podman-compose expands keys too
        {"${U:-network_mode}": "host"},
        {"${U:-cap_add}": ["SYS_ADMIN"]},
        {"${U:-devices}": ["/dev/sda:/dev/sda"]},
        {"${U:-volumes}": ["/etc:/e"]},
        # A service's `environment:` mapping is a variable source for podman-compose.
        {"environment": {"N": "host"}, "network_mode": "${N:-bridge}"},
        {
            "environment": {"P": "/etc"},
            "volumes": [{"type": "bind", "source": "${P:-/srv/models}", "target": "/e"}],
        },
        {"volumes": ["${COMPOSE_PROJECT_DIR:-/srv/models/a/b/c}/../../..:/x"]},
        {"volumes": [{"type": "${T:-bind}", "source": "/", "target": "/h"}]},
        {"volumes": [{"type": "glob", "source": "/etc/*", "target": "/h"}]},
        {"network_mode": "ns:/proc/1/ns/net"},
        {"pid": "ns:/proc/1/ns/pid"},
        {"userns_mode": "ns:/proc/1/ns/user"},
        {"pod": "someone-elses-pod"},
        {"volumes": ["~root/.ssh:/k"]},
    ],
)
def test_the_store_checks_what_podman_compose_will_run(
    tmp_path: Path, service: dict[str, Any]
) -> None:
    policy = Policy(allow_bind_roots=("/srv/models",))
    found = stored(tmp_path, service, {"HOME": "/srv/models/home"}, policy)
    assert found.startswith("project alpha: service llm: "), found
    assert not (tmp_path / "projects" / "alpha").exists()


def test_the_written_file_is_the_checked_file(tmp_path: Path) -> None:
    """Variables are expanded once, by the agent, and every `$` is escaped in the file
    podman-compose reads, which therefore expands to exactly what was checked."""
    from podman_compose import rec_subs  # type: ignore[import-untyped]

    store = ProjectStore(tmp_path, "none", Policy(allow_bind_roots=(str(tmp_path),)),
                         {"CACHE": str(tmp_path)})  # fmt: skip
    service = {"image": "x", "volumes": ["${CACHE}:/c"],
               "environment": {"N": "$${X}", "M": "a$$b"}, "command": "echo $${HOME}"}  # fmt: skip
    text, digest = text_of({"services": {"llm": service}})
    project = store.write("alpha", text, digest)
    written = yaml.safe_load(project.compose_file.read_text())
    again = rec_subs(written, {"X": "/etc", "HOME": "/root", "CACHE": "/etc"})
    llm = again["services"]["llm"]
    assert llm["volumes"] == [f"{tmp_path}:/c"]
    assert llm["environment"] == {"N": "${X}", "M": "a$b"}
    assert llm["command"] == "echo ${HOME}"
    assert store.refused_on_disk("alpha") == ""
    assert store.load("alpha")["services"]["llm"]["environment"]["N"] == "${X}"


def test_a_variable_in_a_key_is_a_hub_warning() -> None:
    found = warnings({"services": {"llm": {"image": "x", "${U:-privileged}": True}}})
    assert any("a variable in the key 'services.llm.${U:-privileged}'" in w for w in found)


@pytest.mark.parametrize("section", ["volumes", "secrets", "configs", "services"])
def test_a_top_level_list_is_one_clear_refusal(tmp_path: Path, section: str) -> None:
    document = {"services": {"llm": {"image": "x"}}, section: ["a", "b"]}
    [found] = [r.line(CONFIG) for r in refusals(document, Policy(), {})]
    assert found == (f"{section} as a list is not allowed on this host: "
                     f"write {section} as a mapping of names")  # fmt: skip
    assert warnings(document)


def test_namespace_paths_are_allowed_by_the_host_setting() -> None:
    assert lines({"network_mode": "ns:/proc/1/ns/net"}, Policy(allow_network_host=True)) == []
    assert lines({"ipc": "ns:/proc/1/ns/ipc"}) == [
        "service llm: ipc: ns:/proc/1/ns/ipc is not allowed on this host: "
        f"set allow_ipc_host: true in {CONFIG}"
    ]
