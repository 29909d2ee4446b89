"""Experiment configs: frozen dataclasses read from TOML, overridden by ``--set key=value``, validated.

``load_config`` rejects unknown keys and values of the wrong type (checked against the dataclass's annotations);
each config's ``__post_init__`` checks its values with ``check``. Both raise ``ConfigError``.
"""

from __future__ import annotations

import ast
import hashlib
import json
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from models.errors import ConfigError

__all__ = ["CONFIGS", "RUN_KEYS", "ConfigError", "build_config", "check", "load_config", "parse_override",
           "run_options", "settings_hash"]

C = TypeVar("C")

CONFIGS = Path(__file__).parent / "configs"


def check(name: str, checks: Mapping[str, bool]) -> None:
    """Raise ``ConfigError`` naming every message of ``checks`` (message -> the condition that must hold) that
    fails, for the config called ``name``."""
    failed = [msg for msg, ok in checks.items() if not ok]
    if failed:
        raise ConfigError(f"bad {name} config: " + "; ".join(failed))


def _conforms(value: Any, hint: Any) -> bool:
    """Whether ``value`` (from TOML or a ``--set`` literal) has the type ``hint``: an int is a float, a bool is no
    number, ``X | None`` admits None, ``list[X]`` checks each element."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        return any(_conforms(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if origin is list:
        return isinstance(value, list) and all(_conforms(v, args[0]) for v in value)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint) if isinstance(hint, type) else True


def _type_name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint)


# Keys of a config file or --set that say how a run executes, not what it computes: they are not part of the
# experiment's config (so a run started on Ray resumes in-process, or with other threads, and the reverse);
# `run_options` reads them. threads: torch threads of an in-process run.
RUN_KEYS = ("threads", "ray", "ray_workers", "ray_threads", "ray_gpus", "ray_shard")


def _read(name: str, path: Path | None, overrides: dict[str, Any] | None) -> dict[str, Any]:
    path = path or CONFIGS / f"{name}.toml"
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"cannot read the {name} config {path}: {err}") from err
    return data | (overrides or {})


def run_options(name: str, path: Path | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``RUN_KEYS`` that the config file (default ``configs/<name>.toml``) and ``overrides`` set."""
    return {k: v for k, v in _read(name, path, overrides).items() if k in RUN_KEYS}


def load_config(cls: type[C], name: str, path: Path | None = None, overrides: dict[str, Any] | None = None) -> C:
    """``cls`` from ``path`` (default ``configs/<name>.toml``) with ``overrides`` applied, without the ``RUN_KEYS``
    that are not fields of ``cls`` (a training config's ``threads`` is its own); unknown keys fail."""
    fields = typing.get_type_hints(cls)
    data = {k: v for k, v in _read(name, path, overrides).items() if k not in RUN_KEYS or k in fields}
    return build_config(cls, name, data)


def build_config(cls: type[C], name: str, data: dict[str, Any]) -> C:
    """``cls(**data)`` once every key is known and every value has its field's type."""
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise ConfigError(f"unknown config key(s) for {name}: {', '.join(unknown)}; known: {', '.join(sorted(hints))}")
    wrong = [f"{k} must be {_type_name(hints[k])}, got {v!r}" for k, v in data.items() if not _conforms(v, hints[k])]
    if wrong:
        raise ConfigError(f"bad {name} config: " + "; ".join(wrong))
    return cls(**data)


def parse_override(item: str) -> tuple[str, Any]:
    """``key=value`` with value read as a Python literal when it is one (numbers, lists, booleans; TOML's ``true``
    and ``false`` too)."""
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    if raw.strip() in ("true", "false"):
        return key.strip(), raw.strip() == "true"
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return key.strip(), value


def settings_hash(settings: dict[str, Any]) -> str:
    """8 hex digits of SHA-256 over ``settings`` as canonical JSON: names a cached artefact (a fine-tuned model, a
    classifier) after everything it was made with, so that changed settings make a new one."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
