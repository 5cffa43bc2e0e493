"""Daemon settings from a YAML file, beneath the command line.

Every long option of a daemon's argparse parser is a key of its config file: `--state-dir`
is `state_dir`, `--heartbeat-interval` is `heartbeat_interval`. A flag added to the parser
is settable from the file with no change here. The file's values become the parser's
defaults, so a flag on the command line still wins. A repeatable option (`--env`) takes a
list; flags add to the file's list. Unknown keys and values of the wrong type stop the
daemon with one line naming the file, the key and the fix.

The file is `--config FILE`, else the packaged default (/etc/gpufleet/NAME.yaml) when it
exists, else none.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import yaml

AGENT_CONFIG = Path("/etc/gpufleet/agent.yaml")
HUB_CONFIG = Path("/etc/gpufleet/hub.yaml")
GATEWAY_CONFIG = Path("/etc/gpufleet/gateway.yaml")

_SKIPPED = (argparse._HelpAction, argparse._VersionAction)
_FLAGS = (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse.BooleanOptionalAction)


class SettingsError(Exception):
    """The config file cannot be used; the message names the file, the key and the fix."""


def key_of(action: argparse.Action) -> str | None:
    """The config-file key of an option: its first long flag, dashes as underscores."""
    for flag in action.option_strings:
        if flag.startswith("--") and flag != "--config":
            return flag[2:].replace("-", "_")
    return None


def options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Config-file key -> the option it sets, for every option a file may set."""
    found = {}
    for action in parser._actions:
        key = key_of(action)
        if key is not None and not isinstance(action, _SKIPPED):
            found[key] = action
    return found


def read(path: Path) -> dict[str, Any]:
    """The file's mapping; an empty file is an empty mapping."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise SettingsError(
            f"cannot read config file {path}: {exc.strerror or exc}: fix the path given to --config"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise SettingsError(f"{path}{where}: {problem}: fix the YAML syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a mapping of option: value at the top level")
    return data


def _describe(value: object) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    return f"a {type(value).__name__} ({value!r})"


def _scalar(path: Path, key: str, action: argparse.Action, value: object) -> object:
    """Convert one YAML scalar the way argparse converts the flag's text."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        hint = " (quote it)" if isinstance(value, bool) else ""
        raise SettingsError(f"{path}: {key} must be a single value, got {_describe(value)}{hint}")
    text = str(value)
    convert = action.type
    try:
        result: object = convert(text) if callable(convert) else text
    except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
        raise SettingsError(f"{path}: {key}: invalid value {text!r}: {exc}") from None
    if action.choices is not None and result not in action.choices:
        allowed = ", ".join(str(choice) for choice in action.choices)
        raise SettingsError(f"{path}: {key}: {text!r} is not one of {allowed}")
    return result


def convert(path: Path, key: str, action: argparse.Action, value: object) -> object:
    """The parser default that the file's `key: value` stands for."""
    if isinstance(action, _FLAGS):
        if not isinstance(value, bool):
            raise SettingsError(f"{path}: {key} must be true or false, got {_describe(value)}")
        if isinstance(action, argparse._StoreFalseAction):
            return not value
        return value
    if isinstance(action, argparse._CountAction):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SettingsError(f"{path}: {key} must be a whole number, got {_describe(value)}")
        return value
    if (
        isinstance(action, argparse._AppendAction)
        or action.nargs in ("*", "+")
        or (isinstance(action.nargs, int) and action.nargs > 1)
    ):
        if not isinstance(value, list):
            raise SettingsError(
                f"{path}: {key} must be a list, e.g. {key}: [a, b], got {_describe(value)}"
            )
        return [_scalar(path, key, action, item) for item in value]
    if type(action) is argparse._StoreAction:
        return _scalar(path, key, action, value)
    raise SettingsError(f"{path}: {key} cannot be set in a config file; pass it as a flag")


def defaults(
    parser: argparse.ArgumentParser, path: Path, accept: Sequence[str] = ()
) -> dict[str, object]:
    """Parser defaults (by dest) from the file; keys in `accept` are valid and ignored."""
    known = options(parser)
    found: dict[str, object] = {}
    for key, value in read(path).items():
        action = known.get(str(key))
        if action is None:
            if key in accept:
                continue
            spelled = str(key).replace("-", "_")
            close = difflib.get_close_matches(spelled, [*known, *accept], n=1)
            fix = f"did you mean {close[0]}?" if close else f"known keys: {', '.join(known)}"
            raise SettingsError(f"{path}: unknown key {key!r}: {fix}")
        found[action.dest] = convert(path, str(key), action, value)
    return found


def chosen_file(argv: Sequence[str], default: Path) -> Path | None:
    """The config file named by --config in argv, else `default` when it exists."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", type=Path)
    known, _ = pre.parse_known_args(argv)
    if known.config is not None:
        return Path(known.config)
    return default if default.is_file() else None


def parse_args(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    default: Path,
    accept: Sequence[str] = (),
) -> argparse.Namespace:
    """Parse argv over the config file's values; a bad file exits 2 with one line."""
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help=f"settings file, overridden by flags (default {default} when it exists)",
    )
    args = list(sys.argv[1:] if argv is None else argv)
    path = chosen_file(args, default)
    if path is not None:
        try:
            parser.set_defaults(**defaults(parser, path, accept))
        except SettingsError as exc:
            fail(parser.prog, str(exc))
    return parser.parse_args(args)


def fail(prog: str, message: str) -> NoReturn:
    print(f"{prog}: {message}", file=sys.stderr)
    sys.exit(2)
