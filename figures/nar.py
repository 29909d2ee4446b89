"""RUM-SUNDAE figures, from ``experiments.nar.summary``: BLEU and chrF against the number of refinement steps T (one
line per non-autoregressive model, the autoregressive model's greedy and beam search and the copy of the source as
horizontal references), and the likelihood-quality view: each system's BLEU against the autoregressive model's NLL
per token of its outputs. 95% bootstrap CIs over verses."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator

from figures.style import Requires, errorbar, new_figure, paper

__all__ = ["likelihood", "steps"]

COLUMNS = ("model", "method", "family", "refine_steps", "bleu", "bleu_lo", "bleu_hi", "chrf", "chrf_lo", "chrf_hi",
           "ar_nll", "ar_nll_lo", "ar_nll_hi")
NAR_COLORS = ("#D55E00", "#0072B2", "#009E73", "#CC79A7", "#E69F00")
REFERENCE_STYLE = {"greedy": ("#000000", "-"), "beam": ("#555555", "--"), "copy": ("#999999", ":")}


@Requires("BLEU and chrF against refinement steps", COLUMNS, scope="any").plot
def steps(table: pd.DataFrame) -> Figure:
    """BLEU and chrF against T for each non-autoregressive model, with the autoregressive systems as references."""
    with paper():
        fig, axes = new_figure(2, width="double", height=2.4)
        nar = table[table["family"] == "refine"]
        ticks = sorted(nar["refine_steps"].astype(int).unique())
        for ax, metric, name in zip(axes, ("bleu", "chrf"), ("BLEU", "chrF"), strict=True):
            for color, (model, sub) in zip(NAR_COLORS, nar.groupby("model", sort=False), strict=False):
                sub = sub.sort_values("refine_steps")
                x = sub["refine_steps"].astype(float).clip(lower=0.5)  # T = 0 sits at the axis' left on the log scale
                errorbar(ax, x, sub[metric], sub[f"{metric}_lo"], sub[f"{metric}_hi"], fmt="o-", color=color,
                         label=model, markersize=3)
            for r in table[table["family"].isin(REFERENCE_STYLE)].itertuples():
                color, line = REFERENCE_STYLE[r.family]
                ax.axhline(getattr(r, metric), color=color, linestyle=line, linewidth=0.8,
                           label=f"{r.model} {r.method}")
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_locator(FixedLocator([max(t, 0.5) for t in ticks]))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xticklabels([str(t) for t in ticks])
            ax.set_xlabel("refinement steps T (at most)")
            ax.set_ylabel(f"{name} (lowercased, test)")
        axes[-1].legend(frameon=False, fontsize=5.5, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return fig


@Requires("BLEU against AR likelihood", COLUMNS, scope="any").plot
def likelihood(table: pd.DataFrame) -> Figure:
    """Each system's BLEU against the autoregressive model's NLL per token of its outputs."""
    with paper():
        fig, (ax,) = new_figure(1, width="single", height=2.4)
        models = list(dict.fromkeys(table.loc[table["family"] == "refine", "model"]))
        for r in table.itertuples():
            if r.family == "refine":
                color, marker = NAR_COLORS[models.index(r.model) % len(NAR_COLORS)], "o"
            else:
                color, marker = REFERENCE_STYLE.get(r.family, ("#000000", "-"))[0], "s"
            ax.errorbar([r.ar_nll], [r.bleu], xerr=[[r.ar_nll - r.ar_nll_lo], [r.ar_nll_hi - r.ar_nll]],
                        yerr=[[r.bleu - r.bleu_lo], [r.bleu_hi - r.bleu]], fmt=marker, color=color, markersize=3,
                        elinewidth=0.6, capsize=1.5)
            if r.family != "refine":  # a model's points at every T lie on top of each other once it stops changing
                ax.annotate(r.method, (r.ar_nll, r.bleu), textcoords="offset points", xytext=(3, 2), fontsize=5,
                            color=color)
        for color, model in zip(NAR_COLORS, models, strict=False):
            ax.plot([], [], "o", color=color, markersize=3, label=model)
        ax.plot([], [], "s", color="#000000", markersize=3, label="autoregressive / copy")
        ax.set_xlabel("AR model's NLL of the outputs (nats/token)")
        ax.set_ylabel("BLEU (lowercased, test)")
        ax.legend(frameon=False, fontsize=5.5, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return fig
