"""The result table (DESIGN.md §5): one row per (run, example, method, rank), JSONL while running, typed parquet after.

A run directory's ``rows.jsonl`` is appended while the run goes (``experiments/rundir.py`` makes it resumable);
``consolidate`` turns it into ``rows.parquet`` with the metric columns of ``analysis.degeneracy``,
``analysis.quality`` and ``analysis.likelihood`` added, and ``load_runs`` concatenates runs with their config as
``cfg_<key>`` columns. Dict-valued cells (``params``, ``signature``) are stored as canonical JSON strings so the
table stays tidy and parquet-typed; token ids and the metrics' per-segment statistics are the only list cells.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["CONFIG", "REQUIRED_COLUMNS", "ROWS_JSONL", "ROWS_PARQUET", "consolidate", "load_run", "load_runs",
           "read_rows", "with_metrics"]

ROWS_JSONL = "rows.jsonl"
ROWS_PARQUET = "rows.parquet"
CONFIG = "config.json"

# column -> pandas dtype; nullable dtypes where a method may have no value (e.g. ``certified`` outside exact search)
REQUIRED_COLUMNS: dict[str, str] = {
    "run_id": "string", "signature": "string", "model": "string", "dataset": "string", "example_id": "string",
    "source": "string", "reference": "string", "method": "string", "params": "string", "rank": "Int64",
    "text": "string", "token_ids": "object", "n_tokens": "Int64", "finished": "boolean", "logprob": "Float64",
    "score": "Float64", "certified": "boolean", "nodes": "Int64", "forward_calls": "Int64", "wall_s": "Float64",
}
_JSON_COLUMNS = ("signature", "params")
_BOOKKEEPING = ("unit", "unit_rows")


def _canonical_json(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"result rows lack the required columns {missing} (DESIGN.md §5)")
    df = df.drop(columns=[c for c in _BOOKKEEPING if c in df.columns])
    for col in _JSON_COLUMNS:
        df[col] = df[col].map(_canonical_json)
    df["example_id"] = df["example_id"].map(lambda v: None if v is None else str(v))
    df["token_ids"] = df["token_ids"].map(lambda v: [int(t) for t in v] if v is not None else [])
    return df.astype({c: t for c, t in REQUIRED_COLUMNS.items() if t != "object"})


def read_rows(run_dir: Path | str) -> pd.DataFrame:
    """The rows of ``run_dir/rows.jsonl`` as a typed frame (no metrics). A torn last line (a run killed while
    writing) is ignored here; resuming the run drops it for good."""
    path = Path(run_dir) / ROWS_JSONL
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: is {run_dir} a run directory?")
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
    if not rows:
        raise ValueError(f"{path} holds no complete rows yet")
    return _typed(pd.DataFrame.from_records(rows))


def with_metrics(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with the degeneracy, quality and likelihood columns (DESIGN.md §5)."""
    from analysis.degeneracy import add_degeneracy
    from analysis.likelihood import add_likelihood
    from analysis.quality import add_quality

    return add_likelihood(add_quality(add_degeneracy(df)))


def consolidate(run_dir: Path | str) -> Path:
    """Write ``rows.parquet`` (typed rows plus metric columns) next to ``rows.jsonl``; returns its path. The file
    is replaced atomically, so readers never see a half-written table."""
    run_dir = Path(run_dir)
    df = with_metrics(read_rows(run_dir))
    out = run_dir / ROWS_PARQUET
    tmp = out.with_suffix(".parquet.tmp")
    df.to_parquet(tmp, index=False)
    tmp.replace(out)
    return out


def load_run(run_dir: Path | str) -> pd.DataFrame:
    """One run's rows with metrics: ``rows.parquet``, consolidated first if missing or older than ``rows.jsonl``."""
    run_dir = Path(run_dir)
    parquet, jsonl = run_dir / ROWS_PARQUET, run_dir / ROWS_JSONL
    if not parquet.is_file() or (jsonl.is_file() and jsonl.stat().st_mtime > parquet.stat().st_mtime):
        consolidate(run_dir)
    return pd.read_parquet(parquet)


def _config_columns(run_dir: Path) -> dict[str, Any]:
    path = run_dir / CONFIG
    if not path.is_file():
        return {}
    config = json.loads(path.read_text())["config"]
    return {f"cfg_{k}": (json.dumps(v) if isinstance(v, list | dict) else v) for k, v in config.items()}


def load_runs(paths: Iterable[Path | str]) -> pd.DataFrame:
    """Concatenate runs (run directories, or a parent folder holding run directories) into one frame, each row
    carrying its run's config as ``cfg_<key>`` columns (lists and dicts as JSON strings)."""
    roots = [Path(p) for p in paths]
    dirs: list[Path] = []
    for p in roots:
        if (p / ROWS_JSONL).is_file() or (p / ROWS_PARQUET).is_file():
            dirs.append(p)
        else:
            dirs.extend(sorted(d for d in p.iterdir() if (d / ROWS_JSONL).is_file() or (d / ROWS_PARQUET).is_file())
                        if p.is_dir() else [])
    if not dirs:
        raise FileNotFoundError(f"no run directories (with {ROWS_JSONL} or {ROWS_PARQUET}) in "
                                f"{[str(r) for r in roots]}")
    frames = [load_run(d).assign(**_config_columns(d)) for d in dirs]
    return pd.concat(frames, ignore_index=True)
