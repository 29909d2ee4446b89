"""Recurrence figures, from ``experiments.recurrence.summary``: test perplexity against the state a method keeps
while reading (log scale), and against wall time per token; one panel per domain (and all domains pooled), a
line per method family through its windows, 95% bootstrap CIs over pieces."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from figures.style import Requires, errorbar, new_figure, paper

__all__ = ["FAMILY_STYLE", "memory", "time"]

FAMILY_STYLE = {"recurrent": ("recurrent (memory)", "#D55E00", "s"),
                "reset": ("initial memory, no carry-over", "#E69F00", "D"),
                "sliding": ("sliding window", "#0072B2", "^"),
                "sliding+sink": ("sliding window + sinks", "#56B4E9", "<"),
                "disjoint": ("disjoint windows", "#999999", "o"),
                "disjoint+slots": ("disjoint, W + slots", "#000000", "v"), "full": ("full context", "#009E73", "*")}

COLUMNS = ("domain", "family", "window", "ppl", "ppl_lo", "ppl_hi", "state_mb", "s_per_token")


def _draw(x: str, label: str) -> Callable[[pd.DataFrame], Figure]:
    def draw(table: pd.DataFrame) -> Figure:
        domains = list(dict.fromkeys(table["domain"]))
        with paper():
            fig, axes = new_figure(len(domains), width="double", height=2.3)
            for ax, domain in zip(axes, domains, strict=True):
                rows = table[table["domain"] == domain]
                for family, (name, color, marker) in FAMILY_STYLE.items():
                    sub = rows[rows["family"] == family].sort_values("window")
                    if sub.empty:
                        continue
                    errorbar(ax, sub[x], sub["ppl"], sub["ppl_lo"], sub["ppl_hi"], fmt=f"{marker}-", color=color,
                             label=name, markersize=6 if family == "full" else 4)
                    for r in sub.itertuples():
                        if family in ("recurrent", "full"):
                            ax.annotate(f"{r.window}", (getattr(r, x), r.ppl), textcoords="offset points",
                                        xytext=(3, 3), fontsize=6, color=color)
                ax.set_xscale("log")
                ax.set_yscale("log")
                plain = FuncFormatter(lambda v, _: f"{v:g}")
                ax.xaxis.set_major_formatter(plain)
                ax.xaxis.set_minor_formatter(NullFormatter())
                ax.yaxis.set_major_formatter(plain)
                ax.yaxis.set_minor_formatter(plain)
                ax.set_xlabel(label)
                ax.set_title(domain)
            axes[0].set_ylabel("perplexity (test, log scale)")
            axes[-1].legend(frameon=False, fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0))
        return fig

    draw.__doc__ = f"Perplexity against {label}, one panel per domain."
    return draw


memory = Requires("perplexity against memory", COLUMNS, scope="any").plot(_draw("state_mb", "state kept (MB)"))
time = Requires("perplexity against time", COLUMNS, scope="any").plot(_draw("s_per_token", "seconds per token"))
