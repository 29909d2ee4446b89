"""HSO figures, from the tables of ``analysis.perplexity.perplexity_table``: test perplexity per method and domain
(a panel per model, 95% bootstrap CIs over segments), and dev perplexity against HSO steps per segment."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from figures.style import Requires, errorbar, new_figure, paper

__all__ = ["METHOD_STYLE", "perplexity", "steps"]

METHOD_STYLE = {"none": ("no adaptation", "#000000", "o"), "hso": ("HSO", "#D55E00", "s"),
                "dynamic_eval": ("dynamic evaluation", "#0072B2", "^")}

PERPLEXITY = Requires("test perplexity per method", ("model", "domain", "method", "ppl", "ppl_lo", "ppl_hi"),
                      scope="any")
STEPS = Requires("dev perplexity against HSO steps", ("model", "domain", "method", "lr", "steps", "ppl"),
                 scope="any", rows=lambda df: None if (df["method"] == "hso").any() else "no HSO rows")


def draw_perplexity(table: pd.DataFrame) -> Figure:
    """Perplexity (log scale) of each method per domain, one panel per model."""
    models = list(dict.fromkeys(table["model"]))
    with paper():
        fig, axes = new_figure(len(models), width="double", height=2.2)
        for ax, model in zip(axes, models, strict=True):
            rows = table[table["model"] == model]
            domains = list(dict.fromkeys(rows["domain"]))
            for i, (method, (label, color, marker)) in enumerate(METHOD_STYLE.items()):
                sub = rows[rows["method"] == method].set_index("domain").reindex(domains)
                x = np.arange(len(domains)) + (i - 1) * 0.2
                errorbar(ax, x, sub["ppl"], sub["ppl_lo"], sub["ppl_hi"], fmt=marker, color=color, label=label)
            ax.set_xticks(np.arange(len(domains)), domains)
            ax.set_yscale("log")
            ax.set_title(model)
            ax.set_ylabel("perplexity (test)")
        axes[0].legend(frameon=False)
    return fig


def draw_steps(table: pd.DataFrame) -> Figure:
    """Dev perplexity relative to no adaptation against HSO steps per segment, at each domain's best rate."""
    models = list(dict.fromkeys(table["model"]))
    with paper():
        fig, axes = new_figure(len(models), width="double", height=2.2)
        for ax, model in zip(axes, models, strict=True):
            rows = table[table["model"] == model]
            for domain, group in rows.groupby("domain", sort=False):
                base = group.loc[group["method"] == "none", "ppl"]
                hso = group[group["method"] == "hso"]
                best_lr = hso.loc[hso["ppl"].idxmin(), "lr"]
                curve = hso[hso["lr"] == best_lr].sort_values("steps")
                steps = [0, *curve["steps"]]
                ratio = [1.0, *(curve["ppl"] / float(base.iloc[0]))] if len(base) else [np.nan] * len(steps)
                ax.plot(steps, ratio, marker="o", label=f"{domain} (lr={best_lr:g})")
            ax.axhline(1.0, color="#999999", linewidth=0.6)
            ax.set_xlabel("HSO steps per segment")
            ax.set_ylabel("perplexity / no adaptation (dev)")
            ax.set_title(model)
            ax.legend(frameon=False)
    return fig


perplexity = PERPLEXITY.plot(draw_perplexity)
steps = STEPS.plot(draw_steps)
