"""The result table (DESIGN.md §5): one row per (run, example, method, rank), JSONL while running, typed parquet after.

A run directory's ``rows.jsonl`` is appended while the run goes (``experiments/rundir.py`` makes it resumable);
``consolidate`` turns it into ``rows.parquet`` with the metric columns of ``analysis.degeneracy``,
``analysis.quality`` and ``analysis.likelihood`` added, and ``load_runs`` concatenates runs with their config as
``cfg_<key>`` columns. Dict-valued cells (``params``, ``signature``) are stored as canonical JSON strings so the
table stays tidy and parquet-typed; token ids and the metrics' per-segment statistics are the only list cells.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from analysis import methods
from analysis.methods import SETTINGS as METHOD_SETTINGS

__all__ = ["COLUMNS", "CONFIG", "OPTIONAL_COLUMNS", "REQUIRED_COLUMNS", "ROWS_JSONL", "ROWS_PARQUET", "Found",
           "complete_rows", "consolidate", "is_true", "load_run", "load_runs", "numeric", "read_rows", "result_rows",
           "rows", "upgrade", "with_metrics"]

ROWS_JSONL = "rows.jsonl"
ROWS_PARQUET = "rows.parquet"
CONFIG = "config.json"

REQUIRED_COLUMNS: dict[str, tuple[str, str]] = {
    "run_id": ("string", "the run that wrote the row"),
    "signature": ("string", "JSON: what identifies the distribution searched (the model's signature) and the method"),
    "model": ("string", "the model's name"),
    "dataset": ("string", "corpus/split of the example"),
    "example_id": ("string", "the example's stable id in its corpus"),
    "source": ("string", "the source text (a prompt's user message for chat models)"),
    "reference": ("string", "the reference output; missing where the corpus has none"),
    "method": ("string", "display key of the method, analysis.methods.label(family, settings): never parsed"),
    "family": ("string", "the method's family, a key of analysis.methods.FAMILIES"),
    "params": ("string", "JSON: the method's settings with the search's max_len and per-row settings"),
    "rank": ("Int64", "position in the method's list of outputs (0: its answer)"),
    "text": ("string", "the output, detokenised and stripped; missing when the search found none"),
    "token_ids": ("object", "the output's token ids, EOS excluded"),
    "n_tokens": ("Int64", "output length in tokens, EOS excluded"),
    "finished": ("boolean", "the output ends in EOS"),
    "logprob": ("Float64", "natural-log model probability of the output, EOS included, never length-normalised"),
    "score": ("Float64", "what the search ranked by (logprob plus any scorer or classifier terms)"),
    "certified": ("boolean", "exact searches: no budget was hit, so the output is the proven optimum; else missing"),
    "nodes": ("Int64", "search nodes expanded"),
    "forward_calls": ("Int64", "model forward calls"),
    "wall_s": ("Float64", "wall time of the whole search (seconds), the same on every row of one search"),
}
"""Column -> (pandas dtype, meaning) of the columns every row has (DESIGN.md §5)."""

OPTIONAL_COLUMNS: dict[str, tuple[str, str]] = {
    "upper_bound": ("Float64", "exact searches: an upper bound on the log-probability of any output not yet ruled out"),
    "max_len": ("Int64", "the search's output length limit (tokens)"),
    "source_tokens": ("Int64", "source length in tokens (without the prompt around it)"),
    "reference_tokens": ("Int64", "reference length in tokens"),
    "target_length": ("Int64", "length-conditional search: the output length this row's mode has"),
    **METHOD_SETTINGS,
    "attribute": ("string", "conditional experiment: the attribute A of its run, e.g. NotDegenerate() & ..."),
    "attribute_holds": ("boolean", "conditional experiment: the output has the attribute A (missing: no output)"),
    "classifier_calls": ("Int64", "conditional beam search: batched classifier calls"),
    "classifier_rows": ("Int64", "conditional beam search: prefixes the classifier scored"),
    "seed_logprob": ("Float64", "exact search: the log-probability of the beam search output that seeded its bound"),
    "tree_mb": ("Float64", "exact search: memory its search tree allocated (MB; decoding.best_first)"),
    "bytes_per_node": ("Float64", "exact search: tree_mb per expanded node, in bytes"),
    "steps_run": ("Int64", "iterative refinement: steps the winning candidate ran (it stops once a step changes "
                  "nothing)"),
    "predicted_length": ("Int64", "iterative refinement: the winning candidate's target length (tokens)"),
    "ar_logprob": ("Float64", "nar experiment: the autoregressive model's log-probability of the output, EOS included"),
    "ar_tokens": ("Int64", "nar experiment: the output's length in the autoregressive model's tokens, EOS included"),
    "epsilon": ("Float64", "contamination experiment: share of contaminated training targets"),
    "noise": ("string", "contamination experiment: what the contaminated targets are (empty, copy; none: control)"),
    "steps": ("Int64", "contamination experiment: fine-tuning steps"),
    "empty_logprob": ("Float64", "contamination experiment: log-probability of the empty output"),
    "copy_logprob": ("Float64", "contamination experiment: log-probability of a copy of the source"),
    "reference_logprob": ("Float64", "contamination experiment: log-probability of the reference"),
}
"""Column -> (pandas dtype, meaning) of the columns some experiments' rows have; the metric columns are declared by
``analysis.degeneracy``, ``analysis.quality`` and ``analysis.likelihood``."""

COLUMNS = REQUIRED_COLUMNS | OPTIONAL_COLUMNS
_JSON_COLUMNS = ("signature", "params")
_BOOKKEEPING = ("unit", "unit_rows")


class Found(NamedTuple):
    """One output of a search with the result it came from and per-row columns (e.g. ``target_length``)."""

    hypothesis: Any
    result: Any
    extra: dict[str, Any]


def result_rows(found: Sequence[Found], *, family: str, settings: Mapping[str, Any], example: Mapping[str, Any],
                model: str, dataset: str, signature: Mapping[str, Any], decode: Callable[[Sequence[int]], str],
                columns: Callable[[Found], Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The result-table rows of one search of one example, rank by rank: the only place rows are made.

    ``found``: the search's outputs (a ``None`` hypothesis: it found none); ``settings``: the method's typed
    settings (keys of ``analysis.methods.SETTINGS``); ``example``: ``example_id``, ``source``, ``reference``,
    ``max_len`` and optionally ``source_tokens`` / ``reference_tokens``; ``signature``: the model's; ``decode``: token
    ids to text; ``columns``: further columns of a row (declared in ``OPTIONAL_COLUMNS``). Every entry of the
    result's ``stats.extra`` becomes a column too."""
    undeclared = sorted(set(settings) - set(METHOD_SETTINGS))
    if undeclared:
        raise ValueError(f"undeclared method settings {undeclared}; declare them in analysis.methods.SETTINGS")
    certifies = methods.family(family).certifies
    name = methods.label(family, settings)
    rows = []
    for rank, f in enumerate(found):
        h, res, extra = f
        more = {**res.stats.extra, **(columns(f) if columns else {})}
        undeclared = sorted((set(extra) | set(more)) - set(OPTIONAL_COLUMNS))
        if undeclared:
            raise ValueError(f"undeclared result columns {undeclared}; declare them in analysis.frames")
        rows.append({
            "signature": dict(signature) | {"method": name, "params": dict(settings)}, "model": model,
            "dataset": dataset, "example_id": str(example["example_id"]), "source": example["source"],
            "reference": example["reference"], "method": name, "family": family,
            "params": dict(settings) | {"max_len": example["max_len"]} | extra, "rank": rank,
            "text": decode(h.token_ids).strip() if h else None, "token_ids": list(h.token_ids) if h else [],
            "n_tokens": h.length if h else None, "finished": h.finished if h else None,
            "logprob": h.logprob if h else None, "score": h.score if h else None,
            "certified": res.certified if certifies else None, "upper_bound": res.stats.upper_bound,
            "nodes": res.stats.nodes, "forward_calls": res.stats.forward_calls, "wall_s": res.stats.wall_s,
            "max_len": example["max_len"], "source_tokens": example.get("source_tokens"),
            "reference_tokens": example.get("reference_tokens"), **settings, **extra, **more})
    return rows


def _canonical_json(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


_OLD_PARAMS = {"max_seconds": "budget_s", "max_nodes": "max_nodes", "constraints": "constraints",
               "length_offsets": "length_offsets", "n": "n_samples", "temperature": "temperature", "seed": "seed",
               "candidates": "candidates", "max_len": "max_len"}


def upgrade(df: pd.DataFrame) -> pd.DataFrame:
    """Rows written before methods were data (no ``family`` column; settings only inside ``params``) in today's
    schema: ``family`` from ``params`` (the conditional experiment recorded it) or, for the others, ``beam`` where a
    beam size was recorded and the method otherwise; the settings and ``max_len`` as their columns. Tables that
    have ``family`` are returned as they are."""
    if "family" in df.columns:
        return df
    params = [json.loads(p) if isinstance(p, str) else dict(p or {}) for p in df["params"]]
    beam = pd.to_numeric(df["beam_size"], errors="coerce").notna() if "beam_size" in df.columns else None
    family = [p.get("family") or ("beam" if beam is not None and beam.iloc[i] else m)
              for i, (p, m) in enumerate(zip(params, df["method"], strict=True))]
    out = df.assign(family=family)
    for old, new in _OLD_PARAMS.items():
        values = [p.get(old) for p in params]
        if any(v is not None for v in values):
            if old == "constraints":
                values = [None if v is None else ", ".join(v) for v in values]
            elif old == "length_offsets":
                values = [None if v is None else json.dumps(v) for v in values]
            out[new] = values
    return out.astype({c: t for c, (t, _) in COLUMNS.items() if c in out.columns and t != "object"})


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    df = upgrade(df)
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"result rows lack the required columns {missing} (DESIGN.md §5)")
    df = df.drop(columns=[c for c in _BOOKKEEPING if c in df.columns])
    for col in _JSON_COLUMNS:
        df[col] = df[col].map(_canonical_json)
    df["example_id"] = df["example_id"].map(lambda v: None if v is None else str(v))
    df["token_ids"] = df["token_ids"].map(lambda v: [int(t) for t in v] if v is not None else [])
    return df.astype({c: t for c, (t, _) in COLUMNS.items() if c in df.columns and t != "object"})


def complete_rows(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """The rows of a ``rows.jsonl`` that belong to complete units (rows naming a ``unit`` count as complete when all
    ``unit_rows`` of them are there; rows without one always do), up to the first line that is torn or lacks its
    newline (a run killed while writing); and whether the file holds nothing else."""
    rows: list[dict[str, Any]] = []
    clean = True
    with open(path, "rb") as f:
        for line in f:
            try:
                if not line.endswith(b"\n"):
                    raise ValueError("unterminated last line")
                rows.append(json.loads(line))
            except ValueError:
                clean = False
                break
    counts = Counter(r["unit"] for r in rows if "unit" in r)
    complete = [r for r in rows if "unit" not in r or counts[r["unit"]] == r["unit_rows"]]
    return complete, clean and len(complete) == len(rows)


def read_rows(run_dir: Path | str) -> pd.DataFrame:
    """The rows of ``run_dir/rows.jsonl`` as a typed frame (no metrics): those of complete units only (a run killed
    while writing leaves part of one, which resuming redoes)."""
    path = Path(run_dir) / ROWS_JSONL
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: is {run_dir} a run directory?")
    rows, _ = complete_rows(path)
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
    try:
        df.to_parquet(tmp, index=False)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def load_run(run_dir: Path | str) -> pd.DataFrame:
    """One run's rows with metrics: ``rows.parquet``, consolidated first if missing or older than ``rows.jsonl``."""
    run_dir = Path(run_dir)
    parquet, jsonl = run_dir / ROWS_PARQUET, run_dir / ROWS_JSONL
    if not parquet.is_file() or (jsonl.is_file() and jsonl.stat().st_mtime > parquet.stat().st_mtime):
        consolidate(run_dir)
    return upgrade(pd.read_parquet(parquet))


def is_true(values: pd.Series) -> pd.Series:
    """``values == True`` with missing values (``pd.NA``, None) as False, for nullable ``boolean`` columns."""
    return values.astype("boolean").fillna(False).astype(bool)


def numeric(values: pd.Series) -> np.ndarray:
    """``values`` as float64 with NaN for missing entries (``pd.NA``, None)."""
    return pd.to_numeric(values, errors="coerce").astype("float64").to_numpy(na_value=np.nan)


def rows(df: pd.DataFrame, *, method: str | None = None, family: str | None = None,
         rank: int | None = 0) -> pd.DataFrame:
    """The rows of ``method`` or ``family`` (all when None) with ``rank`` (all ranks when None); nullable columns
    (``rank`` is ``Int64`` in a consolidated table) compare as False where missing."""
    keep = pd.Series(True, index=df.index)
    if method is not None:
        keep &= is_true(df["method"] == method)
    if family is not None:
        keep &= is_true(df["family"] == family)
    if rank is not None:
        keep &= is_true(df["rank"] == rank)
    return df[keep]


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
