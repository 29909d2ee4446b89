"""Result tables of the contamination experiment, measured against the closed form (``analysis.theory``).

Rows (``experiments/contamination.py``) carry ``noise`` ("none" for the clean control, "empty", "copy"),
``epsilon``, and the model's log-probabilities of the two degenerate outputs D (``empty_logprob``,
``copy_logprob``) and of the reference (``reference_logprob``). Theorem 1 of ``analysis.theory`` applied per source
x: training targets for x follow (1 - eps) P_data(.|x) + eps 1[y = D(x)], so if the control model's P0 stands for
P_data, the mode of the contaminated model is D(x) exactly when

    eps + (1 - eps) P0(D(x) | x)  >  (1 - eps) m0(x),

with m0(x) the control's best non-degenerate probability (its certified ``exact_nondegenerate`` mode). The
predicted share of degenerate modes is the mean of that indicator over sources; the measured share is the share of
certified exact modes equal to D(x).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import stats

__all__ = ["DEGENERATE_OUTPUTS", "mode_rates", "quality_by_setting"]

DEGENERATE_OUTPUTS = ("empty", "copy")


def _modes(df: pd.DataFrame) -> pd.DataFrame:
    """Certified exact modes, one per (model, source), with ``mode_is_empty`` and ``mode_is_copy``."""
    exact = df[(df["method"] == "exact") & (df["rank"] == 0) & df["certified"].fillna(False).astype(bool)].copy()
    exact["mode_is_empty"] = exact["n_tokens"].fillna(-1).astype(int) == 0
    exact["mode_is_copy"] = exact["copy_exact"].fillna(False).astype(bool)
    return exact


def _predicted(df: pd.DataFrame) -> pd.DataFrame:
    """Per source of the control: log m0(x) and log P0(D|x) for each degenerate output D."""
    control = df[(df["noise"] == "none") & (df["method"] == "exact_nondegenerate") & (df["rank"] == 0)
                 & df["certified"].fillna(False).astype(bool)]
    return control[["example_id", "logprob", "empty_logprob", "copy_logprob"]].rename(
        columns={"logprob": "log_m0"}).drop_duplicates("example_id")


def mode_rates(df: pd.DataFrame, *, alpha: float = 0.05) -> pd.DataFrame:
    """One row per (noise, epsilon, degenerate output D): the measured share of certified modes equal to D with a
    Wilson interval (``rate, lo, hi, k, n``), the closed-form prediction from the control model (``predicted``;
    NaN without a control), the mean model probability of D (``mean_p``) and the number of uncertified modes."""
    modes = _modes(df)
    control = _predicted(df)
    rows = []
    for (noise, eps), group in modes.groupby(["noise", "epsilon"], sort=True):
        n_exact = int(((df["noise"] == noise) & (df["epsilon"] == eps) & (df["method"] == "exact")
                       & (df["rank"] == 0)).sum())
        for d in DEGENERATE_OUTPUTS:
            rate = stats.rate_ci(group.assign(hit=group[f"mode_is_{d}"]), "hit", by=(), alpha=alpha).iloc[0]
            pred = np.nan
            if not control.empty:
                log_p0, log_m0 = control[f"{d}_logprob"].to_numpy(), control["log_m0"].to_numpy()
                pred = float(np.mean(eps + (1 - eps) * np.exp(log_p0) > (1 - eps) * np.exp(log_m0)))
            rows.append({"noise": noise, "epsilon": eps, "degenerate_output": d, "rate": rate["rate"],
                         "lo": rate["lo"], "hi": rate["hi"], "k": rate["k"], "n": rate["n"], "predicted": pred,
                         "mean_p": float(np.exp(group[f"{d}_logprob"]).mean()),
                         "uncertified": n_exact - len(group)})
    return pd.DataFrame(rows)


def quality_by_setting(df: pd.DataFrame, *, beam_method: str | None = None, n_boot: int = 1000) -> pd.DataFrame:
    """One row per (noise, epsilon): corpus BLEU and chrF of the beam outputs (bootstrap CIs) and the test
    perplexity of the references, exp(-sum log p / sum tokens incl. EOS)."""
    beam = beam_method or next(m for m in df["method"].unique() if str(m).startswith("beam"))
    rows = df[(df["method"] == beam) & (df["rank"] == 0)]
    bleu = stats.corpus_ci(rows, "bleu", by=("noise", "epsilon"), n_boot=n_boot)
    chrf = stats.corpus_ci(rows, "chrf", by=("noise", "epsilon"), n_boot=n_boot)
    ref = rows.groupby(["noise", "epsilon"]).apply(
        lambda g: float(np.exp(-g["reference_logprob"].sum() / (g["reference_tokens"] + 1).sum())),
        include_groups=False).rename("perplexity").reset_index()
    out = bleu.rename(columns={"value": "bleu", "lo": "bleu_lo", "hi": "bleu_hi"}).merge(
        chrf.rename(columns={"value": "chrf", "lo": "chrf_lo", "hi": "chrf_hi"}).drop(columns="n"),
        on=["noise", "epsilon"])
    return out.merge(ref, on=["noise", "epsilon"]).assign(beam=beam)
