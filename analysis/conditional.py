"""Result tables of the conditional experiment: conditional beam search against its baselines and ablations.

Conditional beam search (``decoding.conditional_beam``; FUDGE, Yang & Klein 2021; "MAP's not dead yet", Yoshida et
al. 2024) searches p(y | x, A) for an attribute A of complete outputs with a learned classifier q(A | x, prefix).
The experiment writes one rank-0 row per (model, source, method) with ``family`` (a beam family, run at each beam
size ``beam_size``, or an exact search without one), ``attribute_holds`` and ``wall_s``. Here:

- ``method_summary``: per (model, method) the mean log-likelihood, the share of outputs with A, degenerate and empty
  outputs, corpus BLEU/chrF, and the search time relative to plain beam search of the same width;
- ``win_rates``: how often one method's output is the likelier of two among outputs with A, for every pair;
- ``likelihood_cost``: the paired log-likelihood difference between conditional and plain beam search;
- ``position_accuracy``: the classifier's held-out accuracy by prefix position (from the calibration table of
  ``models.classifier``), against always predicting the majority label.

An output has A only when there is one and A holds: a search that returns nothing (no finished output with A
within the beam, an exact search stopped by its budget) counts against its method, never as missing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import methods, stats

__all__ = ["BASELINE", "BEAM_FAMILIES", "WIN_TOL", "largest_beam_sizes", "likelihood_cost",
           "method_summary", "position_accuracy", "satisfies", "win_rates"]

BEAM_FAMILIES = methods.families(sized=True)
"""Searches run at each beam size k, in table order."""
BASELINE = "beam"
"""The family that search times are measured against and conditional beam search is compared with."""
WIN_TOL = 1e-9
"""Log-probabilities (nats) closer than this are a tie in ``win_rates``."""

_COLUMNS = ("model", "example_id", "method", "family", "beam_size", "rank", "logprob", "attribute_holds", "wall_s")
_SUMMARY_COLUMNS = (*_COLUMNS, "n_tokens", "certified", "degenerate", "empty", "bleu_stats", "chrf_stats")
_CI_METRICS = {"logprob": "logprob", "length": "n_tokens", "bleu": "bleu", "chrf": "chrf"}
_RATES = {"attribute_holds": "holds", "degenerate": "degenerate", "empty": "empty"}


def satisfies(df: pd.DataFrame) -> pd.Series:
    """Whether each row has an output with A: ``attribute_holds`` true (missing, i.e. no output, counts as false)."""
    return df["attribute_holds"].astype("boolean").fillna(False).astype(bool)


def _prepared(df: pd.DataFrame, columns: tuple[str, ...] = _COLUMNS) -> pd.DataFrame:
    """The rank-0 rows with ``holds`` (bool), ``k`` (Int64 beam size) and float ``logprob`` and ``wall_s``."""
    absent = [c for c in columns if c not in df.columns]
    if absent:
        raise ValueError(f"the table lacks the column(s) {absent}: is it a run of the conditional experiment?")
    top = df[(df["rank"] == 0).fillna(False).astype(bool)]
    return top.assign(holds=satisfies(top),
                      k=pd.to_numeric(top["beam_size"], errors="coerce").astype("Int64"),
                      logprob=pd.to_numeric(top["logprob"], errors="coerce").astype("float64"),
                      wall_s=pd.to_numeric(top["wall_s"], errors="coerce").astype("float64"))


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` sorted by model, family (table order), beam size and method."""
    order = frame.assign(_family=methods.sort_key(frame["family"]),
                         _k=pd.to_numeric(frame["beam_size"], errors="coerce").fillna(0))
    return order.sort_values(["model", "_family", "_k", "method"]).drop(columns=["_family", "_k"])


def _time_vs_beam(top: pd.DataFrame, *, n_boot: int, alpha: float, seed: int) -> pd.DataFrame:
    """Per (model, method) with a beam size: total wall time over plain beam's at the same k on the sources both
    searched, with a bootstrap interval over those sources."""
    base = top.loc[top["family"] == BASELINE, ["model", "k", "example_id", "wall_s"]]
    paired = top.dropna(subset=["k"]).merge(base.rename(columns={"wall_s": "beam_wall_s"}),
                                            on=["model", "k", "example_id"]).dropna(subset=["wall_s", "beam_wall_s"])
    ratio = stats.corpus_ci(paired, "wall_s", denominator="beam_wall_s", by=["model", "method"], rank=None,
                            n_boot=n_boot, alpha=alpha, seed=seed)
    return ratio.rename(columns={"value": "time_vs_beam", "lo": "time_vs_beam_lo", "hi": "time_vs_beam_hi"}).drop(
        columns="n")


def method_summary(df: pd.DataFrame, *, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """One row per (model, method) over rank-0 outputs, models by name and methods in family order.

    Columns: ``model, method, family, beam_size, n`` (sources), ``no_output`` (searches that returned nothing),
    ``certified`` (exact searches within budget; missing for beams); with ``_lo``/``_hi`` bounds of a 95% (1 -
    ``alpha``) interval: ``logprob`` (mean, nats) and ``length`` (mean output tokens), bootstrap over sources;
    ``attribute_holds`` (share of sources, Wilson), ``degenerate``, ``empty`` (shares of the outputs returned,
    Wilson; all shares in [0, 1]); ``bleu``, ``chrf`` (corpus scores, a missing output scored as empty text,
    bootstrap; NaN without references); ``wall_s`` (mean seconds per source) and ``time_vs_beam`` (the method's
    total search time over plain beam search's at the same k on the same sources, bootstrap; NaN for the exact
    searches and where no plain beam ran at that k).
    """
    top = _prepared(df, _SUMMARY_COLUMNS)
    keys = ["model", "method"]
    groups = top.groupby(keys, sort=True)
    out = groups.agg(family=("family", "first"), beam_size=("k", "first"), n=("example_id", "nunique"),
                     no_output=("logprob", lambda s: int(s.isna().sum())),
                     certified=("certified", lambda s: int(s.astype("boolean").fillna(False).sum())),
                     wall_s=("wall_s", "mean")).reset_index()
    out["certified"] = out["certified"].astype("Int64").where(out["family"].isin(methods.families(certifies=True)))
    parts = {name: stats.corpus_ci(top, column, by=keys, rank=None, n_boot=n_boot, alpha=alpha, seed=seed)
             for name, column in _CI_METRICS.items()}
    parts |= {name: stats.rate_ci(top, column, by=keys, alpha=alpha)
              for name, column in _RATES.items()}
    for name, table in parts.items():
        out = out.merge(table[[*keys, "value", "lo", "hi"]].rename(
            columns={"value": name, "lo": f"{name}_lo", "hi": f"{name}_hi"}), on=keys, how="left")
    out = out.merge(_time_vs_beam(top, n_boot=n_boot, alpha=alpha, seed=seed), on=keys, how="left")
    return _ordered(out).reset_index(drop=True)


def largest_beam_sizes(df: pd.DataFrame) -> dict[str, int]:
    """Per model, the largest beam size among its rank-0 rows of the beam families (models without one left out)."""
    top = _prepared(df)
    beams = top[top["family"].isin(BEAM_FAMILIES)].dropna(subset=["k"])
    return {str(model): int(k) for model, k in beams.groupby("model")["k"].max().items()}


def win_rates(df: pd.DataFrame, *, model: str, beam_size: int) -> pd.DataFrame:
    """Square table of the methods of ``model`` at ``beam_size`` plus the exact searches: the share of the sources
    both searched where the row method beats the column method by likelihood among outputs with A.

    The row wins when its output has A and the column's does not, or both have it and the row's is likelier by more
    than ``WIN_TOL`` nats. The diagonal is NaN. Since both cells of a pair count the same sources, the share of
    ties (neither has A, or equal log-probabilities) is ``1 - W.loc[r, c] - W.loc[c, r]``.
    """
    top = _prepared(df)
    ours = top[top["model"] == model]
    if ours.empty:
        raise ValueError(f"no rows of model {model!r}; the table holds {sorted(top['model'].unique())}")
    at_k = ours[(ours["k"] == beam_size).fillna(False).astype(bool) | ~ours["family"].isin(BEAM_FAMILIES)]
    if not (at_k["k"] == beam_size).fillna(False).any():
        raise ValueError(f"model {model!r} has no rows at beam size {beam_size}; its beam sizes are "
                         f"{sorted(int(k) for k in ours['k'].dropna().unique())}")
    repeated = at_k.duplicated(["example_id", "method"])
    if repeated.any():
        raise ValueError(f"win_rates needs one rank-0 row per source and method; {model!r} has several for "
                         f"{sorted(at_k.loc[repeated, 'method'].unique())} (filter to one run first)")
    methods = list(_ordered(at_k.drop_duplicates("method"))["method"])
    holds = at_k.pivot(index="example_id", columns="method", values="holds").reindex(columns=methods)
    logprob = at_k.pivot(index="example_id", columns="method", values="logprob").reindex(columns=methods)
    present = holds.notna().to_numpy()  # (sources, methods)
    has_a = holds.eq(True).to_numpy()
    lp = logprob.to_numpy(dtype=np.float64)
    # (sources, row method, column method)
    both = present[:, :, None] & present[:, None, :]
    wins = has_a[:, :, None] & (~has_a[:, None, :] | (lp[:, :, None] > lp[:, None, :] + WIN_TOL))
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = (wins & both).sum(axis=0) / both.sum(axis=0)
    np.fill_diagonal(rates, np.nan)
    return pd.DataFrame(rates, index=pd.Index(methods, name="method"), columns=pd.Index(methods, name="against"))


def likelihood_cost(df: pd.DataFrame, *, family: str = "conditional_beam", baseline: str = BASELINE,
                    n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """Per (model, beam size): the mean paired difference ``delta_logprob`` (nats) of ``family``'s output minus
    ``baseline``'s at the same k, over the ``n`` sources where both returned an output, with a bootstrap interval
    ``lo, hi``. Negative: conditioning on A costs likelihood, as it must for exact searches."""
    top = _prepared(df).dropna(subset=["k", "logprob"])
    columns = ["model", "k", "example_id", "logprob"]
    paired = top.loc[top["family"] == family, columns].merge(
        top.loc[top["family"] == baseline, columns], on=["model", "k", "example_id"], suffixes=("", "_baseline"))
    paired = paired.assign(delta_logprob=paired["logprob"] - paired["logprob_baseline"],
                           beam_size=paired["k"].astype(int))
    cost = stats.corpus_ci(paired, "delta_logprob", by=["model", "beam_size"], rank=None, n_boot=n_boot,
                           alpha=alpha, seed=seed)
    return cost.rename(columns={"value": "delta_logprob"})


def position_accuracy(calibration: pd.DataFrame) -> pd.DataFrame:
    """The classifier's held-out accuracy by prefix position from a calibration table (``table`` "by_position"
    rows), pooled into doubling buckets of positions (0, 1, 2-3, 4-7, ...): per (model, bucket) ``first, last``
    (positions), ``n`` (prefixes), ``accuracy``, ``majority`` (the accuracy of always predicting the bucket's
    majority label), ``mean_q`` and ``positive_rate``."""
    needed = ("model", "table", "position", "n", "accuracy", "mean_q", "positive_rate")
    absent = [c for c in needed if c not in calibration.columns]
    if absent:
        raise ValueError(f"the calibration table lacks the column(s) {absent}")
    rows = calibration[calibration["table"] == "by_position"]
    position = rows["position"].astype(int)
    weighted = rows.assign(bucket=np.floor(np.log2(position + 1)).astype(int), first=position, last=position,
                           n=rows["n"].astype(float), **{c: rows[c] * rows["n"] for c in
                                                         ("accuracy", "mean_q", "positive_rate")})
    out = weighted.groupby(["model", "bucket"], sort=True).agg(
        first=("first", "min"), last=("last", "max"), n=("n", "sum"), accuracy=("accuracy", "sum"),
        mean_q=("mean_q", "sum"), positive_rate=("positive_rate", "sum")).reset_index()
    for column in ("accuracy", "mean_q", "positive_rate"):
        out[column] = out[column] / out["n"]
    out["majority"] = np.maximum(out["positive_rate"], 1 - out["positive_rate"])
    out["n"] = out["n"].astype(int)
    return out[["model", "first", "last", "n", "accuracy", "majority", "mean_q", "positive_rate"]]
