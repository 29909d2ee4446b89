"""Statistics over result tables, each returning a tidy DataFrame.

- Bootstrap percentile intervals over examples (Efron & Tibshirani, 1993), for any statistic and for corpus metrics
  recomputed from sacreBLEU's per-segment sufficient statistics.
- Paired bootstrap resampling (Koehn, 2004) exactly as ``sacrebleu.significance`` runs it, so p-values agree.
- Per-source rank correlations (Spearman, Kendall's tau-b) between likelihood and quality across a source's
  distinct candidates, and binned likelihood-quantile curves with t intervals.
- Wilson score intervals for rates (Wilson, 1927) and maximum-likelihood logistic regression by Newton/IRLS
  (McCullagh & Nelder, 1989) with Wald intervals and delta-method bands.

Resampling draws ``rng.choice(n, size=(n_boot, n))`` from ``numpy.random.default_rng(seed)``, sacreBLEU's scheme;
every group gets a freshly seeded generator, so a group's interval does not depend on which other groups exist.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps
from scipy.special import expit

from analysis.quality import METRICS, score_from_totals

__all__ = ["binned_curve", "bootstrap_ci", "corpus_ci", "logistic_fit", "paired_bootstrap", "rank_correlation",
           "rate_ci"]

By = str | Sequence[str] | None


def _keys(by: By) -> list[str]:
    if by is None:
        return []
    return [by] if isinstance(by, str) else list(by)


def _groups(df: pd.DataFrame, keys: list[str]) -> Iterator[tuple[dict[str, Any], pd.DataFrame]]:
    if not keys:
        yield {}, df
        return
    for labels, group in df.groupby(keys, sort=True, dropna=False):
        yield dict(zip(keys, labels, strict=True)), group


def _at_rank(df: pd.DataFrame, rank: int | None) -> pd.DataFrame:
    return df if rank is None else df[df["rank"] == rank]


def _check(*, n_boot: int = 1, alpha: float = 0.05) -> None:
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")


def _draws(rng: np.random.Generator, n: int, n_boot: int) -> np.ndarray:
    """(n_boot, n) unit indices drawn with replacement, as sacrebleu.significance draws them."""
    return rng.choice(n, size=(n_boot, n), replace=True)


def _percentile(samples: Sequence[float] | np.ndarray, alpha: float) -> tuple[float, float]:
    values = np.asarray(samples, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.nan, np.nan
    lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def _numeric(values: pd.Series) -> np.ndarray:
    """float64 values; booleans count as 0/1 and None as NaN."""
    return values.astype(object).where(values.notna(), np.nan).astype(np.float64).to_numpy()


def bootstrap_ci(df: pd.DataFrame, statistic: Callable[[pd.DataFrame], float], *, by: By = ("method",),
                 unit: str = "example_id", n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """``statistic`` per group with a percentile interval from resampling whole units (all rows of an example)."""
    _check(n_boot=n_boot, alpha=alpha)
    keys = _keys(by)
    rows = []
    for labels, group in _groups(df, keys):
        positions = list(group.groupby(unit, sort=True).indices.values())
        rng = np.random.default_rng(seed)
        boot = [statistic(group.iloc[np.concatenate([positions[i] for i in draw])])
                for draw in _draws(rng, len(positions), n_boot)] if positions else []
        lo, hi = _percentile(boot, alpha)
        rows.append({**labels, "value": float(statistic(group)), "lo": lo, "hi": hi, "n": len(positions)})
    return pd.DataFrame(rows, columns=[*keys, "value", "lo", "hi", "n"])


def _mean_of_totals(totals: np.ndarray) -> float:
    return float(totals[0] / totals[1])


def _scorer(metric: str) -> Callable[[np.ndarray], float]:
    """The score of a column sum of :func:`_additive` statistics."""
    return functools.partial(score_from_totals, metric) if metric in METRICS else _mean_of_totals


def _additive(group: pd.DataFrame, metric: str, denominator: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Which rows have a value (mask) and their additive statistics, (n_kept, d).

    Corpus metrics add sacreBLEU's statistics; any other column adds (value, 1), so the score is the row mean, or
    (value, ``denominator`` value), so the score is the ratio of the two sums.
    """
    if metric in METRICS:
        column = group[f"{metric}_stats"]
        keep = column.notna().to_numpy()
        if not keep.any():  # a group without references (e.g. a chat model's): no statistics to add
            return keep, np.zeros((0, 1))
        return keep, np.array([np.asarray(s, dtype=np.float64) for s in column[keep]]).reshape(int(keep.sum()), -1)
    x = _numeric(group[metric])
    d = np.ones(len(x)) if denominator is None else _numeric(group[denominator])
    keep = ~np.isnan(x) & ~np.isnan(d)
    return keep, np.column_stack([x[keep], d[keep]])


def corpus_ci(df: pd.DataFrame, metric: str, *, by: By = ("method",), rank: int | None = 0, n_boot: int = 1000,
              alpha: float = 0.05, seed: int = 0, denominator: str | None = None) -> pd.DataFrame:
    """Corpus ``bleu``/``chrf``/``ter`` from the ``*_stats`` columns, or any column's mean (booleans as 0/1, NaN
    ignored), or with ``denominator`` the ratio of the column's sum to that column's sum (e.g. total search time
    over a baseline's), per group, with a percentile interval from resampling examples (all of an example's rows at
    once)."""
    _check(n_boot=n_boot, alpha=alpha)
    if denominator is not None and metric in METRICS:
        raise ValueError(f"{metric} is scored from its sufficient statistics; a denominator applies to other columns")
    keys = _keys(by)
    score = _scorer(metric)
    rows = []
    for labels, group in _groups(_at_rank(df, rank), keys):
        keep, values = _additive(group, metric, denominator)
        codes, uniques = pd.factorize(group["example_id"].to_numpy()[keep], sort=True)
        n = len(uniques)
        if n == 0:
            rows.append({**labels, "value": np.nan, "lo": np.nan, "hi": np.nan, "n": 0})
            continue
        units = np.zeros((n, values.shape[1]))  # (examples, d)
        np.add.at(units, codes, values)
        draws = _draws(np.random.default_rng(seed), n, n_boot)
        # How often each example is drawn in each resample, (n_boot, n): resampled totals are one matrix product.
        counts = np.bincount((draws + n * np.arange(n_boot)[:, None]).ravel(), minlength=n_boot * n)
        lo, hi = _percentile([score(t) for t in counts.reshape(n_boot, n) @ units], alpha)
        rows.append({**labels, "value": score(units.sum(axis=0)), "lo": lo, "hi": hi, "n": n})
    return pd.DataFrame(rows, columns=[*keys, "value", "lo", "hi", "n"])


def paired_bootstrap(df: pd.DataFrame, metric: str, *, baseline: Any, by: str = "method", rank: int | None = 0,
                     n_boot: int = 1000, seed: int | None = 12345) -> pd.DataFrame:
    """Each system against ``baseline`` by paired bootstrap resampling (Koehn, 2004) on their common examples.

    The test is sacreBLEU's ``paired-bs``: resample examples ``n_boot`` times (the same draws for both systems),
    centre the absolute score differences at their mean, and count how often they exceed the observed absolute
    difference: ``p = (count + 1) / (n_boot + 1)``. Examples are taken in sorted ``example_id`` order, and corpus
    metrics are resampled in float32 as sacreBLEU does, so for the same hypotheses in that order, ``n_boot`` and
    seed the p-values equal sacreBLEU's. (sacreBLEU treats seed 0 as unseeded; here only ``None`` is.) Any other
    metric column is compared by its mean. ``delta`` is ``value - baseline_value``.
    """
    _check(n_boot=n_boot)
    systems: dict[Any, pd.DataFrame] = {}
    for name, group in _at_rank(df, rank).groupby(by, sort=True):
        keep, values = _additive(group, metric)
        table = pd.DataFrame(values, index=group["example_id"].to_numpy()[keep])
        if table.index.has_duplicates:
            raise ValueError(f"paired_bootstrap needs one row per example and {by}; {name!r} has several rows for "
                             "some example_id (filter to one run and one rank first)")
        systems[name] = table
    if baseline not in systems:
        raise ValueError(f"baseline {baseline!r} has no rows; {by} values are {sorted(systems)}")
    # sacreBLEU resamples its statistics in float32; matching it keeps p-values equal even at ties.
    dtype = np.float32 if metric in METRICS else np.float64
    score = _scorer(metric)
    rows = []
    for name, table in systems.items():
        if name == baseline:
            continue
        common = sorted(set(table.index) & set(systems[baseline].index))
        value = base_value = p_value = np.nan
        if common:
            sys_stats, base_stats = table.loc[common].to_numpy(), systems[baseline].loc[common].to_numpy()
            value, base_value = score(sys_stats.sum(axis=0)), score(base_stats.sum(axis=0))
            sys_r, base_r = sys_stats.astype(dtype), base_stats.astype(dtype)
            draws = _draws(np.random.default_rng(seed), len(common), n_boot)
            diffs = np.abs([score(sys_r[d].sum(axis=0)) - score(base_r[d].sum(axis=0)) for d in draws])
            p_value = float((np.sum(diffs - diffs.mean() > abs(value - base_value)) + 1) / (n_boot + 1))
        rows.append({by: name, "baseline": baseline, "value": value, "baseline_value": base_value,
                     "delta": value - base_value, "p_value": p_value})
    return pd.DataFrame(rows, columns=[by, "baseline", "value", "baseline_value", "delta", "p_value"])


def _correlations(group: pd.DataFrame, x: str, y: str, unit: str) -> dict[str, np.ndarray]:
    """Per source: Spearman and Kendall (tau-b) across its distinct candidates (one row per distinct ``text``)."""
    data = group.assign(_x=_numeric(group[x]), _y=_numeric(group[y])).dropna(subset=["_x", "_y"])
    if "text" in data.columns:
        data = data.drop_duplicates([unit, "text"])
    found: dict[str, list[float]] = {"spearman": [], "kendall": []}
    for _, source in data.groupby(unit, sort=True):
        a, b = source["_x"].to_numpy(), source["_y"].to_numpy()
        if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
            continue
        found["spearman"].append(float(sps.spearmanr(a, b).statistic))
        found["kendall"].append(float(sps.kendalltau(a, b).statistic))
    return {name: np.array(values) for name, values in found.items()}


def rank_correlation(df: pd.DataFrame, *, x: str = "logprob", y: str = "chrf", unit: str = "example_id",
                     by: By = None, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Mean over sources of the per-source rank correlation of ``x`` and ``y`` across that source's distinct
    candidates, with a 95% percentile interval from resampling sources. Sources with fewer than 3 distinct
    candidates, or constant ``x`` or ``y``, are skipped; a group with none left gets NaN and ``n_sources`` 0."""
    _check(n_boot=n_boot)
    keys = _keys(by)
    rows = []
    for labels, group in _groups(df, keys):
        for statistic, values in _correlations(group, x, y, unit).items():
            n = len(values)
            value, lo, hi = np.nan, np.nan, np.nan
            if n:
                value = float(values.mean())
                lo, hi = _percentile(values[_draws(np.random.default_rng(seed), n, n_boot)].mean(axis=1), 0.05)
            rows.append({**labels, "statistic": statistic, "value": value, "lo": lo, "hi": hi, "n_sources": n})
    return pd.DataFrame(rows, columns=[*keys, "statistic", "value", "lo", "hi", "n_sources"])


def _t_interval(values: pd.Series, alpha: float) -> pd.Series:
    n, mean = len(values), values.mean()
    half = sps.t.ppf(1 - alpha / 2, n - 1) * values.std(ddof=1) / np.sqrt(n) if n > 1 else np.nan
    return pd.Series({"y_mean": mean, "lo": mean - half, "hi": mean + half, "n": n})


def binned_curve(df: pd.DataFrame, *, x: str = "logprob", y: str = "chrf", bins: int = 10,
                 within: str | None = "example_id", by: By = None, alpha: float = 0.05) -> pd.DataFrame:
    """Mean ``y`` per quantile bin of ``x``, with a t interval.

    ``x`` becomes its quantile (average rank / count, in (0, 1]) within each ``within`` group (None: over the
    whole group), so sources of different lengths share one axis; bin ``b`` holds quantiles in
    ``(b / bins, (b + 1) / bins]``. ``x_lo``, ``x_hi``, ``x_mid`` are the bin's edges and centre on that quantile
    scale. Empty bins are left out; a bin with one row has NaN ``lo``/``hi``.
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    _check(alpha=alpha)
    keys = _keys(by)
    data = df.assign(_x=_numeric(df[x]), _y=_numeric(df[y])).dropna(subset=["_x", "_y"])
    scope = keys + ([within] if within else [])
    if scope:
        ranked = data.groupby(scope, dropna=False)["_x"]
        quantile = ranked.rank(method="average") / ranked.transform("count")
    else:
        quantile = data["_x"].rank(method="average") / len(data)
    data = data.assign(bin=np.clip(np.ceil(quantile.to_numpy() * bins) - 1, 0, bins - 1).astype(int))
    columns = [*keys, "bin", "x_lo", "x_hi", "x_mid", "y_mean", "lo", "hi", "n"]
    if data.empty:
        return pd.DataFrame(columns=columns)
    out = data.groupby([*keys, "bin"], sort=True, dropna=False)["_y"].apply(_t_interval, alpha=alpha).unstack()
    out = out.reset_index().assign(x_lo=lambda d: d["bin"] / bins, x_hi=lambda d: (d["bin"] + 1) / bins,
                                   x_mid=lambda d: (d["bin"] + 0.5) / bins)
    return out.astype({"n": int})[columns]


def rate_ci(df: pd.DataFrame, column: str, *, by: By = ("method",), alpha: float = 0.05) -> pd.DataFrame:
    """Rate of a boolean (or 0/1) column per group with a Wilson score interval; NaN rows are dropped. Columns
    ``[*by, value, lo, hi, k, n]``, like the other intervals (``value``: the rate k / n)."""
    _check(alpha=alpha)
    keys = _keys(by)
    z = sps.norm.ppf(1 - alpha / 2)
    rows = []
    for labels, group in _groups(df, keys):
        values = _numeric(group[column])
        values = values[~np.isnan(values)]
        if not np.isin(values, (0.0, 1.0)).all():
            raise ValueError(f"rate_ci needs a boolean or 0/1 column; {column!r} has other values")
        n, k = len(values), int(values.sum())
        rate, lo, hi = np.nan, np.nan, np.nan
        if n:
            rate = k / n
            centre = (rate + z**2 / (2 * n)) / (1 + z**2 / n)
            half = z / (1 + z**2 / n) * np.sqrt(rate * (1 - rate) / n + z**2 / (4 * n**2))
            lo, hi = centre - half, centre + half
        rows.append({**labels, "value": rate, "lo": lo, "hi": hi, "k": k, "n": n})
    return pd.DataFrame(rows, columns=[*keys, "value", "lo", "hi", "k", "n"])


def logistic_fit(df: pd.DataFrame, *, x: str, y: str, grid: Sequence[float] | np.ndarray | None = None,
                 alpha: float = 0.05) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Maximum-likelihood logistic regression ``P(y) = sigmoid(a + b x)`` by Newton's method (IRLS).

    Returns (coefficients ``[term, estimate, se, lo, hi, p_value]`` with Wald intervals and tests, curve
    ``[x, p, lo, hi]`` on ``grid``, default 50 points over x's range, with a delta-method band on the logit
    scale). Rows with NaN in ``x`` or ``y`` are dropped. Raises ValueError where the MLE does not exist: one class
    only, (quasi-)complete separation, or constant ``x``.
    """
    _check(alpha=alpha)
    data = pd.DataFrame({"x": _numeric(df[x]), "y": _numeric(df[y])}).dropna()
    xs, ys = data["x"].to_numpy(), data["y"].to_numpy()
    if not np.isin(ys, (0.0, 1.0)).all():
        raise ValueError(f"logistic_fit needs a boolean or 0/1 response; {y!r} has other values")
    if ys.size == 0 or ys.min() == ys.max():
        raise ValueError(f"logistic_fit needs both outcomes of {y!r}; got {int(ys.sum())} of {ys.size} true")
    if np.ptp(xs) == 0:
        raise ValueError(f"logistic_fit needs {x!r} to vary; it is constant")
    x0, x1 = xs[ys == 0], xs[ys == 1]
    if x0.max() <= x1.min() or x1.max() <= x0.min():
        raise ValueError(f"{x!r} separates the outcomes of {y!r} (quasi-)completely: the MLE does not exist "
                         "(the slope diverges)")
    design = np.column_stack([np.ones_like(xs), xs])  # (n, 2)
    beta = np.zeros(2)
    for _ in range(100):
        p = expit(design @ beta)
        information = design.T @ (design * (p * (1 - p))[:, None])
        step = np.linalg.solve(information, design.T @ (ys - p))
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10 * (1 + np.max(np.abs(beta))):
            break
    else:
        raise ValueError("logistic_fit: Newton's method did not converge in 100 iterations")
    p = expit(design @ beta)
    cov = np.linalg.inv(design.T @ (design * (p * (1 - p))[:, None]))
    se = np.sqrt(np.diag(cov))
    z = sps.norm.ppf(1 - alpha / 2)
    coefficients = pd.DataFrame({"term": ["intercept", x], "estimate": beta, "se": se, "lo": beta - z * se,
                                 "hi": beta + z * se, "p_value": 2 * sps.norm.sf(np.abs(beta / se))})
    at = np.linspace(xs.min(), xs.max(), 50) if grid is None else np.asarray(grid, dtype=np.float64)
    points = np.column_stack([np.ones_like(at), at])
    logit = points @ beta
    half = z * np.sqrt(np.einsum("ij,jk,ik->i", points, cov, points))
    curve = pd.DataFrame({"x": at, "p": expit(logit), "lo": expit(logit - half), "hi": expit(logit + half)})
    return coefficients, curve
