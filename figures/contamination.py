"""Degenerate modes of trained models against the training-data contamination rate eps (Yoshida 2024): the share of
certified exact modes that are the noise output (Wilson 95% CIs) with the closed-form prediction from the clean
control model at the nominal rate (dashed) and with the noise probability the contaminated model learned (dotted),
next to the beam outputs' corpus BLEU (bootstrap 95% CI) and the test perplexity, which
the theory predicts barely move. eps is on a symmetric-log axis so that the control (eps = 0) is on it.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from analysis import frames
from analysis.contamination import mode_rates, quality_by_setting
from figures import style

__all__ = ["REQUIRES", "draw", "plot"]

_COLUMNS = ("noise", "epsilon", "family", "rank", "certified", "n_tokens", "copy_exact", "empty_logprob",
            "copy_logprob", "reference_logprob", "reference_tokens", "bleu_stats")
NOISE_COLORS = {"empty": "#D55E00", "copy": "#0072B2"}
LINTHRESH = 1e-3


def _unusable(df: pd.DataFrame) -> str | None:
    """Why the rows cannot be drawn, or None."""
    if not (frames.is_true(frames.rows(df, family="exact")["certified"])).any():
        return "no certified exact modes"
    return None


def _with_control(table: pd.DataFrame, noise: str) -> pd.DataFrame:
    """The rows of ``noise`` plus the clean control (noise "none", eps = 0) as its eps = 0 point."""
    return table[table["noise"].isin([noise, "none"])].sort_values("epsilon")


def draw(df: pd.DataFrame) -> Figure:
    """Degenerate-mode share and beam quality against the contamination rate eps."""
    rates = mode_rates(df)
    quality = quality_by_setting(df)
    noises = [n for n in NOISE_COLORS if n in set(df["noise"])]
    with style.paper():
        fig, (ax_mode, ax_bleu) = style.new_figure(2, width="double", height=3.2)
        for noise in noises:
            color = NOISE_COLORS[noise]
            r = _with_control(rates[rates["degenerate_output"] == noise], noise)
            style.errorbar(ax_mode, r["epsilon"], 100 * r["rate"], 100 * r["lo"], 100 * r["hi"], fmt="o-",
                           color=color, label=f"{noise} noise: mode is {noise} (measured)")
            ax_mode.plot(r["epsilon"], 100 * r["predicted"], ls="--", color=color,
                         label=f"{noise}: predicted (control, nominal ε)")
            ax_mode.plot(r["epsilon"], 100 * r["predicted_learned"], ls=":", color=color,
                         label=f"{noise}: predicted (control, learned P(D))")
            q = _with_control(quality, noise)
            style.errorbar(ax_bleu, q["epsilon"], q["bleu"], q["bleu_lo"], q["bleu_hi"], fmt="o-", color=color,
                           label=f"{noise} noise: BLEU ({q['beam'].iloc[0]})")
        ax_ppl = ax_bleu.twinx()
        for noise in noises:
            q = _with_control(quality, noise)
            ax_ppl.plot(q["epsilon"], q["perplexity"], ls=":", marker="s", mfc="none", color=NOISE_COLORS[noise],
                        label=f"{noise} noise: perplexity")
        for ax in (ax_mode, ax_bleu):
            ax.set_xscale("symlog", linthresh=LINTHRESH)
            ax.set_xlabel("contamination rate ε (share of training targets)")
        ax_mode.set_ylabel("certified exact modes that are degenerate (%)")
        ax_bleu.set_ylabel("corpus BLEU of beam output")
        ax_ppl.set_ylabel("reference perplexity")
        ax_ppl.spines["right"].set_visible(True)
        n = int(rates["n"].max()) if len(rates) else 0
        ax_mode.set_title(f"degenerate modes ({n} sources, 95% CI)")
        ax_bleu.set_title("beam quality and reference perplexity")
        # one legend below both panels: inside, it would cover the points
        entries = [ax.get_legend_handles_labels() for ax in (ax_mode, ax_bleu, ax_ppl)]
        fig.legend([h for hs, _ in entries for h in hs], [lb for _, lbs in entries for lb in lbs],
                   loc="outside lower center", ncols=3)
    return fig


REQUIRES = style.Requires("contamination", _COLUMNS, scope="any", rows=_unusable)
plot = REQUIRES.plot(draw)
