"""Run directories: config.json, argv.txt, env.json and rows.jsonl appended as results arrive.

A run directory is resumable: the rows of one unit of work (e.g. one example under one method) are appended
together and fsynced; each row names its unit and the unit's row count, so on resume a unit cut short by a
kill (a partial line, or some of its lines) is dropped and redone, and ``done`` lists the complete units.
Resuming with a different config is refused, so one directory never mixes two configurations.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from analysis.frames import CONFIG, ROWS_JSONL
from models.errors import ConfigError


def environment() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for dist in ("likelihood-quality", "torch", "transformers", "numpy", "pandas", "sacrebleu"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, check=False).stdout.strip() or None
    except OSError:
        commit = None
    return {"python": sys.version.split()[0], "platform": platform.platform(), "git_commit": commit,
            "versions": versions}


class RunDir:
    def __init__(self, path: Path, config: dict[str, Any], argv: Iterable[str]):
        self.path = Path(path)
        self.rows_path = self.path / ROWS_JSONL
        config_path = self.path / CONFIG
        if config_path.exists():
            previous = json.loads(config_path.read_text())
            if previous["config"] != config:
                raise ConfigError(f"{self.path} holds a run with a different config; use another --out to start a "
                                 f"new run (differences: {_diff(previous['config'], config)})")
            self.run_id = previous["run_id"]
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            self.run_id = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
            config_path.write_text(json.dumps({"run_id": self.run_id, "config": config}, indent=2) + "\n")
            (self.path / "env.json").write_text(json.dumps(environment(), indent=2) + "\n")
        with open(self.path / "argv.txt", "a") as f:
            f.write(" ".join(argv) + "\n")
        self.rows = self._read_rows()

    def _read_rows(self) -> list[dict[str, Any]]:
        if not self.rows_path.exists():
            return []
        rows, torn = [], False
        with open(self.rows_path, "rb") as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    torn = True
                    break
        counts = Counter(r["unit"] for r in rows)
        complete = [r for r in rows if counts[r["unit"]] == r["unit_rows"]]
        if torn or len(complete) != len(rows):
            tmp = self.rows_path.with_suffix(".tmp")
            tmp.write_text("".join(_line(r) for r in complete))
            tmp.replace(self.rows_path)
        return complete

    @property
    def done(self) -> set[str]:
        return {r["unit"] for r in self.rows}

    def append(self, unit: str, rows: list[dict[str, Any]]) -> None:
        full = [{"run_id": self.run_id, "unit": unit, "unit_rows": len(rows), **r} for r in rows]
        with open(self.rows_path, "a") as f:
            f.write("".join(_line(r) for r in full))
            f.flush()
            os.fsync(f.fileno())
        self.rows.extend(full)


def _line(row: dict[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False) + "\n"


def _diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    keys = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    return ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys)
