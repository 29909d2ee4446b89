"""Result tables of the contamination experiment, measured against the closed form (``analysis.theory``).

Rows (``experiments/contamination.py``) carry ``noise`` ("none" for the clean control, "empty", "copy"),
``epsilon``, and the model's log-probabilities of the two degenerate outputs D (``empty_logprob``,
``copy_logprob``) and of the reference (``reference_logprob``). Theorem 1 of ``analysis.theory`` applied per source
x: training targets for x follow (1 - eps) P_data(.|x) + eps 1[y = D(x)], so if the control model's P0 stands for
P_data, the mode of the contaminated model is D(x) exactly when

    eps + (1 - eps) P0(D(x) | x)  >  (1 - eps) m0(x),

with m0(x) the control's best non-degenerate probability (its certified ``exact_nondegenerate`` mode). The
predicted share of degenerate modes is the mean of that indicator over sources; the measured share is the share of
certified exact modes equal to D(x). That prediction assumes the model learned the noise rate; a model trained
briefly learns less of it, so a second prediction puts the contaminated model's own P(D(x) | x) in place of
eps + (1 - eps) P0(D(x) | x): it separates "did the model learn the noise" from "does learned noise take the mode".
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
    Wilson interval (``rate, lo, hi, k, n``); the closed-form prediction from the control model at the nominal
    rate (``predicted``) and with the model's own P(D|x) (``predicted_learned``), both NaN without a control; the
    mean model probability of D (``mean_p``) and the number of uncertified modes."""
    modes = _modes(df)
    control = _predicted(df).set_index("example_id")
    rows = []
    for (noise, eps), group in modes.groupby(["noise", "epsilon"], sort=True):
        n_exact = int(((df["noise"] == noise) & (df["epsilon"] == eps) & (df["method"] == "exact")
                       & (df["rank"] == 0)).sum())
        own = df[(df["noise"] == noise) & (df["epsilon"] == eps) & (df["method"] == "exact")
                 & (df["rank"] == 0)].set_index("example_id")
        both = control.join(own[["empty_logprob", "copy_logprob"]], rsuffix="_own", how="inner")
        m0 = np.exp(both["log_m0"].to_numpy())
        for d in DEGENERATE_OUTPUTS:
            rate = stats.rate_ci(group.assign(hit=group[f"mode_is_{d}"]), "hit", by=(), alpha=alpha).iloc[0]
            e = eps if d == noise else 0.0  # the noise puts its mass on its own kind of output only
            pred = pred_own = np.nan
            if len(both):
                nominal = e + (1 - e) * np.exp(both[f"{d}_logprob"].to_numpy())
                pred = float(np.mean(nominal > (1 - e) * m0))
                pred_own = float(np.mean(np.exp(both[f"{d}_logprob_own"].to_numpy()) > (1 - e) * m0))
            rows.append({"noise": noise, "epsilon": eps, "degenerate_output": d, "rate": rate["value"],
                         "lo": rate["lo"], "hi": rate["hi"], "k": rate["k"], "n": rate["n"], "predicted": pred,
                         "predicted_learned": pred_own, "mean_p": float(np.exp(own[f"{d}_logprob"]).mean()),
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
