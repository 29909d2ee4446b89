"""Experiment configs: frozen dataclasses read from TOML, overridden by ``--set key=value``, validated."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any, TypeVar

C = TypeVar("C")

CONFIGS = Path(__file__).parent / "configs"


def load_config(cls: type[C], name: str, path: Path | None = None, overrides: dict[str, Any] | None = None) -> C:
    """``cls`` from ``path`` (default ``configs/<name>.toml``) with ``overrides`` applied; unknown keys fail."""
    data = tomllib.loads((path or CONFIGS / f"{name}.toml").read_text())
    data.update(overrides or {})
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise SystemExit(f"unknown config key(s) for {name}: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return cls(**data)


def parse_override(item: str) -> tuple[str, Any]:
    """``key=value`` with value read as a Python literal when it is one (numbers, lists, booleans)."""
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise SystemExit(f"--set expects key=value, got {item!r}")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return key.strip(), value


def settings_hash(settings: dict[str, Any]) -> str:
    """8 hex digits of SHA-256 over ``settings`` as canonical JSON: names a cached artefact (a fine-tuned model, a
    classifier) after everything it was made with, so that changed settings make a new one."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
