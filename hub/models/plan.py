"""What a model switch needs from the files, computed in a worker of the models lane.

The model (by name or alias), its deployment for the request (`hub.models.deploy`), the VRAM
it needs per GPU, the configurations of the configurations directory (what a node may run
now, to drain and to roll back to) and the model deployments the nodes run now, regenerated
from the current model files with their stored GPUs, port and environment (so a model's
rollback, like a configuration's, uses the current file, and runs from where it ran). A
llama.cpp model that `switch-backend` associated with an environment (`Request.environments`)
is generated to run from it. A model from the registry is generated from its entry as the hub's
database has it (`Request.entries`: plain data, read by the hub); an entry that is missing or
not ready refuses the switch. Plain picklable values; no hub state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hub.configs import SUFFIXES, ConfigError, Configuration, load_configuration
from hub.models import cached, catalog, deploy, estimate, load
from hub.models.load import ModelError
from hub.models.schema import Model, RegistryCopy


class EntryUnusable(deploy.DeployError):
    """The model's registry entry is missing or not ready: the line says how to fill it."""


@dataclass(frozen=True)
class Request:
    name: str
    gpus: tuple[int, ...]
    gpu_count: int
    port: int
    image: str
    # model -> the environment switch-backend associated it with (hub.store.backends); a
    # model that has none runs from its definition's backend.
    environments: tuple[tuple[str, str], ...] = ()
    # The registry's entries (hub.store.registry), for models whose source is one.
    entries: tuple[RegistryCopy, ...] = ()

    def environment(self, model: Model) -> str:
        return dict(self.environments).get(model.name, "")

    def entry(self, model: Model) -> RegistryCopy | None:
        return cached.entry_for(model, self.entries)


def environments(found: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The associations as a Request carries them."""
    return tuple(sorted(found.items()))


@dataclass(frozen=True)
class Stored:
    """A deployment a node runs now, as the store has it."""

    node: str
    model: str
    gpus: tuple[int, ...]
    port: int
    environment: str = ""  # llama.cpp: the environment it was started from ("": its backend)


@dataclass(frozen=True)
class Plan:
    model: Model
    where: deploy.Placement
    target: Configuration
    vram_gb: float | None  # per GPU; None: unknown (no capacity check)
    vram_basis: str
    configurations: dict[str, Configuration]
    previous: dict[str, Configuration]  # node -> the model deployment it runs, regenerated
    entry: RegistryCopy | None = None  # the registry entry the model is served from


def regenerate(models: dict[str, Model], stored: Stored, image: str,
               entries: Sequence[RegistryCopy] = ()) -> Configuration | None:  # fmt: skip
    """A stored deployment as its model file defines it now (None: it cannot be any more; a
    registry source whose entry is not among `entries`)."""
    model = models.get(stored.model)
    if model is None:
        return None
    where = deploy.Placement(stored.gpus, stored.port)
    runs = deploy.on_environment(model, stored.environment)
    entry = cached.entry_for(model, entries)
    sizes = estimate.EntrySizes(catalog.SIZES, entry)
    found = estimate.estimate(runs, sizes, max(1, len(stored.gpus)))
    try:
        return deploy.configuration(model, where, found.vram_gb or 0.0, image, stored.environment,
                                    entry)  # fmt: skip
    except deploy.DeployError:
        return None


def regenerated(models_dir: Path, stored: Sequence[Stored], image: str,
                entries: Sequence[RegistryCopy] = ()) -> dict[str, Configuration]:  # fmt: skip
    """Per node, the model deployment it runs as its model file defines it now (for a
    configuration switch or a drain of a node that runs a model). A models directory that is
    gone or cannot be listed regenerates none: the switch or drain then says it has no
    definition of the model to drain, and no rollback brings it back."""
    try:
        models, _ = load.load_directory(models_dir)
    except ModelError:
        return {}
    found = {}
    for s in stored:
        again = regenerate(models, s, image, entries)
        if again is not None:
            found[s.node] = again
    return found


def running_configurations(configs_dir: Path, names: Iterable[str],
                           models: dict[str, Model]) -> dict[str, Configuration]:  # fmt: skip
    """The configurations the target nodes run, read alone (the whole directory is parsed at
    about 16 ms; a switch needs only these): a file that is gone or invalid is left out, so
    its node is switched without drain or rollback, as with a whole-directory read."""
    found: dict[str, Configuration] = {}
    for name in sorted(set(names)):
        for suffix in SUFFIXES:
            path = configs_dir / f"{name}{suffix}"
            try:
                if path.is_file():
                    found[name] = load_configuration(path, models)
                    break
            except (ConfigError, OSError):
                break
    return found


def plan(models_dir: Path, configs_dir: Path, request: Request,
         stored: Sequence[Stored], running: Iterable[str] = ()) -> Plan:  # fmt: skip
    """The switch's plan; ModelError (NotFound: close names) or DeployError, one line."""
    models, _ = load.load_directory(models_dir)
    try:
        model = load.find(models, request.name)
    except ModelError as exc:
        raise catalog.NotFound(str(exc)) from None
    configurations = running_configurations(configs_dir, running, models)
    return planned(models, model, request, stored, configurations)


def planned(models: dict[str, Model], model: Model, request: Request, stored: Sequence[Stored],
            configurations: dict[str, Configuration]) -> Plan:  # fmt: skip
    """The plan of `model` (one of `models`) for the request (DeployError: why not; for a
    registry source whose entry is missing or not ready, the line says how to fill it)."""
    entry = request.entry(model)
    why = cached.unusable(model, entry)
    if why:
        raise EntryUnusable(why)
    environment = request.environment(model)
    runs = deploy.on_environment(model, environment)  # its backend decides GPUs and layers
    where = deploy.placement(runs, request.gpus, request.gpu_count, request.port)
    sizes = estimate.EntrySizes(catalog.SIZES, entry)
    found = estimate.estimate(runs, sizes, max(1, len(where.gpus)))
    target = deploy.configuration(model, where, found.vram_gb or 0.0, request.image, environment,
                                  entry)  # fmt: skip
    previous = {
        s.node: c for s in stored if (c := regenerate(models, s, request.image, request.entries))
    }
    return Plan(model, where, target, found.vram_gb, found.basis, configurations, previous, entry)


def find(models_dir: Path, name: str) -> Model:
    """The model by name or alias (NotFound with close names)."""
    models, _ = load.load_directory(models_dir)
    try:
        return load.find(models, name)
    except ModelError as exc:
        raise catalog.NotFound(str(exc)) from None
