"""Run directories: config.json, argv.txt, env.json and rows.jsonl appended as results arrive.

A run directory is resumable: the rows of one unit of work (e.g. one example under one method) are appended
together in one write and fsynced; each row names its unit and the unit's row count, so on resume a unit cut short
by a kill (a partial line, a last line without its newline, or some of its lines) is dropped and redone, and
``done`` lists the complete units. Resuming with a different config is refused once the directory holds rows, so
one directory never mixes two configurations; a start that failed before its first row leaves nothing behind (a
directory it made is removed, one that existed keeps no config). While a run writes it, the directory is locked
(``.lock``); a second run into it is refused with the holder's pid, host and start time.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from analysis.frames import CONFIG, ROWS_JSONL, complete_rows
from models.errors import ConfigError, InputError

LOCK = ".lock"


class RunDirBusyError(InputError):
    """Another run is writing the run directory."""


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
    """A run directory, used as a context manager: entering locks it, repairs a torn ``rows.jsonl`` and checks (or
    writes) its config; leaving unlocks it, and removes what a start that wrote no row made."""

    def __init__(self, path: Path, config: dict[str, Any], argv: Iterable[str]):
        self.path = Path(path)
        self.rows_path = self.path / ROWS_JSONL
        self.config = config
        self.argv = " ".join(argv)
        self.rows: list[dict[str, Any]] = []
        self._lock: int | None = None
        self._made = False

    def __enter__(self) -> RunDir:
        self._made = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InputError(f"cannot create the run directory {self.path}: {err.strerror or err}") from err
        self._acquire()
        try:
            self._open()
        except BaseException:
            self._release(failed=True)
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self._release(failed=exc_type is not None)

    def _acquire(self) -> None:
        """Take the directory's lock (a ``flock`` on ``.lock``, re-taken if the file was replaced meanwhile)."""
        lock = self.path / LOCK
        while True:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 1000).decode(errors="replace").strip() or "another process"
                os.close(fd)
                raise RunDirBusyError(f"{self.path} is being written by {holder}; wait for that run to end or use "
                                      "another --out") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(lock).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {datetime.now(UTC):%Y-%m-%d %H:%M:%S} "
                     "UTC\n".encode())
        self._lock = fd

    def _release(self, *, failed: bool) -> None:
        if failed and not self.rows:
            if self._made:
                shutil.rmtree(self.path, ignore_errors=True)
            elif not self.rows_path.exists():
                for name in (CONFIG, "env.json"):
                    (self.path / name).unlink(missing_ok=True)
        if self._lock is not None:
            if self.path.is_dir():
                (self.path / LOCK).unlink(missing_ok=True)
            os.close(self._lock)
            self._lock = None

    def _open(self) -> None:
        self.rows = self._read_rows()
        config_path = self.path / CONFIG
        previous = json.loads(config_path.read_text()) if config_path.is_file() else None
        if previous is not None and self.rows:
            if previous["config"] != self.config:
                raise ConfigError(f"{self.path} holds a run with a different config; use another --out to start a "
                                  f"new run (differences: {_diff(previous['config'], self.config)})")
            self.run_id = previous["run_id"]
        else:
            self.run_id = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
            config_path.write_text(json.dumps({"run_id": self.run_id, "config": self.config}, indent=2) + "\n")
            (self.path / "env.json").write_text(json.dumps(environment(), indent=2) + "\n")
        with open(self.path / "argv.txt", "a") as f:
            f.write(self.argv + "\n")

    def _read_rows(self) -> list[dict[str, Any]]:
        """The rows of complete units; a file with anything else (a torn or unterminated last line, part of a unit)
        is rewritten without it, so that appends start on a fresh line."""
        if not self.rows_path.exists():
            return []
        rows, clean = complete_rows(self.rows_path)
        if not clean:
            tmp = self.rows_path.with_suffix(".tmp")
            tmp.write_text("".join(_line(r) for r in rows))
            tmp.replace(self.rows_path)
        return rows

    @property
    def done(self) -> set[str]:
        return {r["unit"] for r in self.rows}

    def append(self, unit: str, rows: list[dict[str, Any]]) -> None:
        """Append one unit's rows in one write, fsynced."""
        if self._lock is None:
            raise RuntimeError("RunDir.append outside `with RunDir(...)`")
        full = [{"run_id": self.run_id, "unit": unit, "unit_rows": len(rows), **r} for r in rows]
        data = "".join(_line(r) for r in full).encode()
        fd = os.open(self.rows_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
            os.fsync(fd)
        finally:
            os.close(fd)
        self.rows.extend(full)


def _line(row: dict[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False) + "\n"


def _diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    keys = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    return ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys)
