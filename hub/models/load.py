"""Model files: a models directory (`--models DIR`), one or more models per YAML file.

A file holds a model in our YAML form (`hub.models.fields`), a VLLMModel document
(`hub.models.chill`), or several of either as a multi-document stream (`---`) or a Kubernetes
`kind: List` (what `kubectl get vllmmodels -o yaml` prints). A model without a name takes the
file's stem when it is the file's only model.

A file is hostile input until parsed, with the limits configurations have (`hub.configs`):
refused before parsing when larger than MAX_BYTES, and while parsing when it nests deeper
than MAX_DEPTH or its aliases would expand past MAX_NODES. Otherwise every problem of a file
is reported, one line each, naming the file, the field and the fix. Two models with the same
name or alias are refused naming both files. Parsing is CPU work: the hub runs it in a worker.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml

from hub.configs import (
    MAX_BYTES,
    MAX_NODES,
    MAX_PROBLEMS,
    SUFFIXES,
    BoundedLoader,
    ProblemsError,
    TooComplex,
    expanded,
    read_bounded,
)
from hub.models import chill, fields
from hub.models.checks import Problems
from hub.models.schema import Model

MAX_MODELS = 100  # documents in one file
MAX_LISTED = 20  # model names a not-found line lists


class ModelError(ProblemsError):
    """A model file's problems: the file, the field, what is wrong and the fix."""

    command = "hubctl models validate"


def _documents(text: str) -> list[Any]:
    loader = BoundedLoader(text)
    found, sizes, total = [], {}, 0  # type: ignore[var-annotated]
    try:
        while loader.check_node():  # type: ignore[no-untyped-call]
            node = loader.get_node()  # type: ignore[no-untyped-call]
            if node is None:
                continue
            total += expanded(node, sizes)
            if total > MAX_NODES:
                raise TooComplex(f"expands to more than {MAX_NODES:,} values through its "
                                  "aliases (*name): write the values out instead")  # fmt: skip
            if len(found) >= MAX_MODELS:
                raise TooComplex(f"holds more than {MAX_MODELS} documents: split it")
            found.append(loader.construct_document(node))
    finally:
        loader.dispose()
    return [doc for doc in found if doc is not None]


def _parse(text: str, path: Path) -> list[Any]:
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise ModelError(f"{path}: not UTF-8 (at {exc.start}); save it as UTF-8") from None
    if size > MAX_BYTES:
        raise ModelError(_too_large(path, size))
    try:
        return _documents(text)
    except TooComplex as exc:
        raise ModelError(f"{path}: refused: {exc}") from None
    except RecursionError:
        raise ModelError(f"{path}: refused: nests too deeply: flatten it") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ModelError(f"{path}: invalid YAML{at}: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ModelError(f"{path}: invalid YAML: {exc}") from None


def _too_large(path: Path, size: int | None = None) -> str:
    what = f"{size:,} bytes, larger" if size is not None else "larger"
    return f"{path}: refused: {what} than the {MAX_BYTES // 1024} KiB a model file may have"


def _items(documents: list[Any]) -> list[Any]:
    """Documents, with each Kubernetes `kind: List` replaced by its items."""
    found = []
    for doc in documents:
        if isinstance(doc, dict) and doc.get("kind") == "List" and isinstance(doc.get("items"),
                                                                              list):  # fmt: skip
            found.extend(doc["items"])
        else:
            found.append(doc)
    return found


def parse_models(text: str, path: Path) -> tuple[Model, ...]:
    """Every model of a file's text, or ModelError with every problem of the file."""
    documents = _items(_parse(text, path))
    if not documents:
        raise ModelError(f"{path}: holds no model: add one (name, source, engine)")
    lines: list[str] = []
    models: list[Model] = []
    for index, doc in enumerate(documents, 1):
        p = Problems()
        where = f"{path}" if len(documents) == 1 else f"{path} (model {index})"
        if chill.is_document(doc):
            model = chill.read(p, doc, str(path))
        else:
            model = fields.read(p, doc, path.stem if len(documents) == 1 else "", str(path))
        lines.extend(f"{where}: {line}" for line in p.lines)
        if model is not None:
            models.append(model)
    seen: dict[str, Model] = {}
    for model in models:
        for name in model.ids:
            if name in seen:
                lines.append(f"{path}: {name!r} names two models ({seen[name].name!r} and "
                             f"{model.name!r}): rename one of them")  # fmt: skip
            seen[name] = model
    if lines:
        if len(lines) > MAX_PROBLEMS:
            more = len(lines) - MAX_PROBLEMS
            lines = [*lines[:MAX_PROBLEMS], f"{path}: {more} more problems not shown: fix the "
                                             "ones above first"]  # fmt: skip
        raise ModelError(*lines)
    return tuple(models)


def load_file(path: Path) -> tuple[Model, ...]:
    return parse_models(read_bounded(path, ModelError, _too_large), path)


def load_directory(directory: Path) -> tuple[dict[str, Model], list[ModelError]]:
    """Every valid model by name, plus one error per bad file or clashing model. Of two
    models with one name or alias, the one in the file sorted first is kept."""
    if not directory.is_dir():
        raise ModelError(f"{directory}: no such models directory; pass --models DIR")
    try:
        files = sorted(p for p in directory.iterdir()
                       if p.suffix in SUFFIXES and not p.name.startswith("."))  # fmt: skip
        files = [p for p in files if p.is_file()]
    except OSError as exc:
        raise ModelError(f"{directory}: cannot list: {exc.strerror or exc}") from None
    models: dict[str, Model] = {}
    owners: dict[str, Model] = {}  # every name and alias -> its model
    errors: list[ModelError] = []
    for path in files:
        try:
            found = load_file(path)
        except ModelError as exc:  # one line per file: the first problem, and how many more
            errors.append(ModelError(exc.summary(path)))
            continue
        except (MemoryError, RecursionError, ValueError, TypeError) as exc:  # contained
            errors.append(ModelError(f"{path}: cannot be loaded ({type(exc).__name__}: {exc})"))
            continue
        for model in found:
            clash = next((name for name in model.ids if name in owners), None)
            if clash is not None:
                other = owners[clash]
                errors.append(ModelError(
                    f"{path}: {clash!r} (model {model.name!r}) is already defined in {other.file} "
                    f"(model {other.name!r}): rename one of the two"))  # fmt: skip
                continue
            models[model.name] = model
            owners.update(dict.fromkeys(model.ids, model))
    return models, errors


def find(models: dict[str, Model], name: str) -> Model:
    """The model named `name` or with that alias; ModelError listing close names otherwise."""
    for model in models.values():
        if name in model.ids:
            return model
    known = sorted(n for model in models.values() for n in model.ids)
    close = difflib.get_close_matches(name, known, n=3)
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    names = sorted(models)
    listing = ", ".join(names[:MAX_LISTED]) or "none: add model files to the models directory"
    if len(names) > MAX_LISTED:
        listing += f" and {len(names) - MAX_LISTED} more: `hubctl models` lists them"
    raise ModelError(f"model {name!r} not found{hint} (available: {listing})")
