"""What a switch plan regenerates of the model deployments nodes run (hub.models.plan): from
the current model files, and nothing (never an error) when the models directory is gone."""

from __future__ import annotations

from pathlib import Path

from hub.models import plan

TINY = """\
name: tiny-a
engine: llama-cpp
source: {path: /srv/models/tiny-a.gguf}
llama_cpp: {backend: cpu, n_ctx: 256}
"""
RUNS = [plan.Stored("n1", "tiny-a", (), 18000), plan.Stored("n2", "gone", (), 18001)]


def test_a_stored_deployment_is_regenerated_from_its_current_file(tmp_path: Path) -> None:
    (tmp_path / "tiny-a.yaml").write_text(TINY)
    found = plan.regenerated(tmp_path, RUNS, "img")
    assert list(found) == ["n1"] and found["n1"].name == "model-tiny-a"
    assert "--port=18000" in found["n1"].text


def test_a_models_directory_gone_or_unlistable_regenerates_nothing(tmp_path: Path) -> None:
    assert plan.regenerated(tmp_path / "moved", RUNS, "img") == {}
    (tmp_path / "file").write_text(TINY)
    assert plan.regenerated(tmp_path / "file", RUNS, "img") == {}
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "tiny-a.yaml").write_text(TINY)
    locked.chmod(0)
    try:
        found = plan.regenerated(locked, RUNS, "img")
    finally:
        locked.chmod(0o755)
    assert found == {} or list(found) == ["n1"]  # root lists it anyway


def test_a_plan_reads_only_the_configurations_its_nodes_run(tmp_path: Path) -> None:
    models, configs = tmp_path / "models", tmp_path / "configs"
    models.mkdir()
    configs.mkdir()
    (models / "tiny-a.yaml").write_text(TINY)
    source = Path(__file__).resolve().parents[2] / "fixtures" / "switch-configs"
    for name in ("alpha", "beta"):
        (configs / f"{name}.yaml").write_text((source / f"{name}.yaml").read_text())
    (configs / "broken.yaml").write_text("services: [")
    asked = plan.Request("tiny-a", (), 0, 18000, "img")
    found = plan.plan(models, configs, asked, [], ["alpha", "broken", "missing"])
    assert sorted(found.configurations) == ["alpha"]  # not beta; broken and missing left out
    assert found.target.name == "model-tiny-a"
    assert plan.plan(models, tmp_path / "none", asked, [], ["alpha"]).configurations == {}
