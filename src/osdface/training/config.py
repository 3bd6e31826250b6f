"""Typed training configs: dataclass defaults ← YAML file ← ``key=value`` command-line overrides.

One dataclass per training stage (nested dataclasses for sections). ``load_config(Stage1Config,
"configs/stage1.yaml", ["train.lr=2e-4", "data.size=256"])`` type-checks every value against the
field's annotation, rejects unknown keys with the list of valid ones, and ``config_to_dict`` gives
the plain dict that every checkpoint stores.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Sequence, TypeVar

import yaml

from ..errors import OSDFaceError

T = TypeVar("T")


class ConfigError(OSDFaceError):
    """A config file or override is invalid; the message names the key and the problem."""


_BOOL_WORDS = {True: {"true", "yes", "on"}, False: {"false", "no", "off"}}


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Check/convert ``value`` to the field type (int→float allowed, YAML lists→tuples)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin is typing.Literal:
        if isinstance(value, bool):  # YAML 1.1 files read `no`/`yes`/`off`/`on` as booleans
            value = next((a for a in args if isinstance(a, str) and a in _BOOL_WORDS[value]), value)
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], key) for v in value)
        if origin is tuple and args:
            if len(args) != len(value):
                raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, key) for v, a in zip(value, args))
        return origin(_coerce(v, args[0], key) for v in value) if args else origin(value)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a section (mapping), got {value!r}")
        return _build(annotation, value, prefix=f"{key}.")
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{key}: expected float, got {value!r}") from None
    if annotation is bool and isinstance(value, str) and value.lower() in _BOOL_WORDS[True] | _BOOL_WORDS[False]:
        return value.lower() in _BOOL_WORDS[True]
    if annotation is bool and not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if annotation in (int, float, str) and not isinstance(value, annotation) or (
        annotation is int and isinstance(value, bool)
    ):
        raise ConfigError(f"{key}: expected {annotation.__name__}, got {value!r}")
    return value


def _build(cls: type[T], values: dict, prefix: str = "") -> T:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown config key {prefix}{unknown[0]}; valid keys here: "
                          f"{', '.join(sorted(prefix + n for n in names))}")
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in values.items()}
    return cls(**kwargs)


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_overrides(overrides: Sequence[str]) -> dict:
    """``["train.lr=1e-4", "data.roots=[a, b]"]`` → nested dict (values parsed as YAML scalars/lists)."""
    nested: dict = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. train.lr=1e-4)")
        key, raw = item.split("=", 1)
        word = raw.strip().lower()
        # yes/no/on/off stay words (a Literal like mixed_precision="no" needs them; bool fields accept them)
        value = raw.strip() if word in ("yes", "no", "on", "off") else (yaml.safe_load(raw) if raw.strip() else None)
        if isinstance(value, str) and raw.strip().lower() in ("none", "null"):
            value = None
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return nested


def config_to_dict(config: Any) -> dict:
    """Dataclass → plain dict (tuples as lists), the form stored in checkpoints and YAML."""
    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return plain(config)


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = (),
                base: dict | None = None) -> T:
    """Defaults of ``cls`` ← ``base`` dict (e.g. from a checkpoint) ← YAML ``path`` ← ``overrides``."""
    values = config_to_dict(cls()) if base is None else _merge(config_to_dict(cls()), base)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a config file must be a mapping of sections")
        values = _merge(values, loaded)
    values = _merge(values, parse_overrides(overrides))
    return _build(cls, values)


def save_config(config: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
