"""One config path for every stage: YAML file + ``key=value`` overrides -> a typed dataclass.

    cfg = load_config(SFTStageConfig, "configs/stage1_sft/nano.yaml", ["trainer.learning_rate=1e-4"])

Overrides use dotted keys; list items are addressed by index (``data.0.kwargs.n=5000``); values are read as
YAML scalars (``1e-4`` is a float, ``true`` a bool, ``[a, b]`` a list, ``null`` None). Every problem — a missing
file, malformed YAML, an unknown key, a wrong type — is a ``ConfigError`` whose one-line message names the file
and the key, raised before any model is loaded.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


class ConfigError(ValueError):
    """A config problem the user can fix; its message is one line naming the file and the key."""


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def apply_override(data: dict, override: str, where: str) -> None:
    """Set ``a.b.0.c=value`` inside ``data`` (in place)."""
    if "=" not in override:
        raise ConfigError(f"{where}: override {override!r} is not of the form key=value")
    key, raw = override.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw  # e.g. a value with a colon in it: keep the text as it is
    if isinstance(value, str) and _FLOAT.fullmatch(value):
        value = float(value)  # YAML 1.1 reads "1e-4" as a string; on a command line it means a number
    parts = key.strip().split(".")
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        path = ".".join(parts[: i + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"{where}: override {key!r}: {path} is not an index of a list of {len(node)}")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise ConfigError(f"{where}: override {key!r}: {'.'.join(parts[:i])} is a value, not a section")


PRESETS_DIR = Path(__file__).resolve().parents[1] / "configs" / "models"


def apply_model_preset(data: dict, where: str) -> None:
    """``model: {preset: qwen3-0.6b, ...}`` takes configs/models/qwen3-0.6b.yaml as defaults for the section.

    The one inheritance we allow: a model's name, dtype, attention, context length and LoRA defaults live in
    one file per size; keys written in the stage config win. The resolved section is what stage.json records.
    """
    model = data.get("model")
    if not isinstance(model, dict) or "preset" not in model:
        return
    name = model.pop("preset")
    preset_file = PRESETS_DIR / f"{name}.yaml"
    if not preset_file.is_file():
        known = sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))
        raise ConfigError(f"{where}: model.preset: unknown preset {name!r}; known: {known}")
    preset = load_yaml(preset_file)
    lora = model.get("lora")
    if isinstance(lora, dict) and isinstance(preset.get("lora"), dict):
        model["lora"] = {**preset["lora"], **lora}
    data["model"] = {**preset, **model}


def load_config(cls: type, path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Any:
    """Read ``path``, apply ``overrides`` and convert to the dataclass ``cls`` (see module docstring)."""
    data = load_yaml(path)
    for override in overrides:
        apply_override(data, override, str(path))
    apply_model_preset(data, str(path))
    return convert(cls, data, str(path), "")


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def convert(tp: Any, value: Any, file: str, key: str) -> Any:
    """Check ``value`` against the type ``tp`` and build dataclasses; errors name ``file`` and ``key``."""
    where = f"{file}: {key or '<top level>'}"
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a section of keys, got {value!r}")
        fields = {f.name: f for f in dataclasses.fields(tp)}
        hints = typing.get_type_hints(tp)
        for k in value:
            if k not in fields:
                close = difflib.get_close_matches(str(k), list(fields), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f"; known keys: {sorted(fields)}"
                raise ConfigError(f"{file}: {key + '.' if key else ''}{k}: unknown key{hint}")
        kwargs = {}
        for name, f in fields.items():
            sub = f"{key}.{name}" if key else name
            if name in value:
                kwargs[name] = convert(hints[name], value[name], file, sub)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{file}: {sub}: required key is missing")
        try:
            return tp(**kwargs)
        except ValueError as e:  # __post_init__ checks (ranges, combinations)
            raise ConfigError(f"{file}: {key + ': ' if key else ''}{e}") from None
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got null")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return convert(arg, value, file, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{where}: expected one of {list(allowed)}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp) or (Any,)
        return [convert(item, v, file, f"{key}.{i}") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a section of keys, got {value!r}")
        args = typing.get_args(tp)
        if args:
            return {k: convert(args[1], v, file, f"{key}.{k}") for k, v in value.items()}
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"config type {tp!r} at {key} is not supported")  # a bug in a config dataclass, not user input


def to_dict(cfg: Any) -> dict:
    """The resolved config as plain data (for stage.json and printing)."""
    return dataclasses.asdict(cfg)


def build_trainer_args(args_cls: type, settings: dict, file: str, key: str = "trainer", **forced: Any):
    """Build a TRL/transformers ``*Config`` from the YAML section, naming unknown or invalid keys.

    ``forced`` values (output dir, seed, …) are set by the stage and may not be given in the section.
    """
    fields = {f.name for f in dataclasses.fields(args_cls)}
    file = f"{file}: " if file else ""
    for k in settings:
        if k not in fields:
            close = difflib.get_close_matches(k, list(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{file}{key}.{k}: unknown {args_cls.__name__} setting{hint}")
        if k in forced:
            raise ConfigError(f"{file}{key}.{k}: set by the stage ({forced[k]!r}); remove it from the config")
    try:
        return args_cls(**settings, **forced)
    except (TypeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{file}{key}: {args_cls.__name__} rejected the settings: {first}") from None


def parse_argv(argv: list[str], doc: str) -> tuple[str, list[str]]:
    """``--config FILE key=value …`` -> (file, overrides). ``-h`` prints ``doc``."""
    if not argv or argv[0] in ("-h", "--help"):
        print(doc)
        raise SystemExit(0 if argv else 2)
    if argv[0] != "--config" or len(argv) < 2:
        raise ConfigError(f"usage: --config FILE [key=value ...]; got {' '.join(argv)!r}")
    return argv[1], argv[2:]


def run_cli(main, cfg_cls: type, doc: str, argv: list[str] | None = None) -> None:
    """The entry point shared by every stage: parse, load, run ``main(cfg)``; user errors exit 2 in one line.

    Set POSTTRAIN_TRACEBACK=1 to see the full traceback of such an error.
    """
    argv = sys.argv[1:] if argv is None else argv
    path = "<command line>"
    try:
        path, overrides = parse_argv(argv, doc)
        cfg = load_config(cfg_cls, path, overrides)
        main(cfg)
    except (ValueError, FileNotFoundError, NotADirectoryError, PermissionError) as e:
        if os.environ.get("POSTTRAIN_TRACEBACK"):
            raise
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, ConfigError) and not message.startswith(path):
            message = f"{path}: {message}"  # errors found after loading (trainer section, model path) name the file
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2) from None
