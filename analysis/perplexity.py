"""Streaming perplexity tables (``lq run hso-perplexity``): per method, domain and model, perplexity with bootstrap
CIs over segments, and the change in log-perplexity against no adaptation with paired bootstrap CIs (the same
segments resampled for both methods).

A table has one row per scored segment: ``model``, ``domain``, ``phase`` ("dev" or "test"), ``method``
(``none``, ``hso``, ``dynamic_eval``), ``lr``, ``steps``, ``chunk``, ``segment``, ``tokens`` and ``nll`` (the
segment's summed negative log-likelihood, nats), plus per chunk ``seconds`` and ``state_mb``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["METHODS", "best_settings", "perplexity_table", "setting_name"]

METHODS = ("none", "hso", "dynamic_eval")
SETTING = ["method", "lr", "steps"]


def setting_name(method: str, lr: float, steps: int) -> str:
    """``hso lr=0.003 steps=1``; the baseline is just ``none``."""
    return method if method == "none" else f"{method} lr={lr:g} steps={steps}"


def _totals(df: pd.DataFrame) -> pd.DataFrame:
    """(chunk, segment) x setting tables of nll, and the tokens of each segment."""
    return df.pivot_table(index=["chunk", "segment"], columns=SETTING, values="nll", aggfunc="sum")


def best_settings(dev: pd.DataFrame) -> pd.DataFrame:
    """Per (model, domain, method) the (lr, steps) with the lowest dev perplexity, and that perplexity."""
    totals = dev.groupby(["model", "domain", *SETTING], as_index=False)[["nll", "tokens"]].sum()
    totals["ppl"] = np.exp(totals["nll"] / totals["tokens"])
    best = totals.loc[totals.groupby(["model", "domain", "method"])["ppl"].idxmin()]
    return best.drop(columns=["nll", "tokens"]).reset_index(drop=True)


def perplexity_table(df: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> pd.DataFrame:
    """One row per (model, domain, setting) of ``df`` (one phase): tokens, perplexity [CI], the change in log-
    perplexity against ``none`` (nats per token) [paired CI] and its share of segments, seconds per token and the
    memory the method keeps (``state_mb``)."""
    rng = np.random.default_rng(seed)
    out = []
    for (model, domain), group in df.groupby(["model", "domain"], sort=False):
        nll = _totals(group)
        tokens = group.drop_duplicates(["chunk", "segment"]).set_index(["chunk", "segment"])["tokens"]
        tokens = tokens.reindex(nll.index).to_numpy(float)
        draws = rng.integers(0, len(tokens), size=(n_boot, len(tokens)))
        boot_tokens = tokens[draws].sum(axis=1)
        base = nll[("none",) + _only(nll, "none")].to_numpy() if "none" in nll.columns.get_level_values(0) else None
        timing = group.drop_duplicates(["chunk", *SETTING]).groupby(SETTING)
        seconds = timing["seconds"].sum() / group.groupby(SETTING)["tokens"].sum()
        state = timing["state_mb"].max()
        for setting in nll.columns:
            values = nll[setting].to_numpy()
            logppl = values.sum() / tokens.sum()
            boot = values[draws].sum(axis=1) / boot_tokens
            row = {"model": model, "domain": domain, "method": setting[0], "lr": setting[1], "steps": setting[2],
                   "name": setting_name(*setting), "tokens": int(tokens.sum()), "ppl": float(np.exp(logppl)),
                   "ppl_lo": float(np.exp(np.quantile(boot, alpha / 2))),
                   "ppl_hi": float(np.exp(np.quantile(boot, 1 - alpha / 2))),
                   "s_per_token": float(seconds[setting]), "state_mb": float(state[setting])}
            if base is not None:
                delta = (values - base)[draws].sum(axis=1) / boot_tokens
                row |= {"delta_logppl": float((values - base).sum() / tokens.sum()),
                        "delta_lo": float(np.quantile(delta, alpha / 2)),
                        "delta_hi": float(np.quantile(delta, 1 - alpha / 2)),
                        "segments_better": float(np.mean(values < base))}
            out.append(row)
    return pd.DataFrame(out)


def _only(nll: pd.DataFrame, method: str) -> tuple[float, int]:
    """The (lr, steps) of the one setting of ``method`` in ``nll``'s columns."""
    settings = [c[1:] for c in nll.columns if c[0] == method]
    if len(settings) != 1:
        raise ValueError(f"expected one setting of {method}, got {settings}")
    return settings[0]
