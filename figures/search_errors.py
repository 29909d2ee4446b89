"""Search errors of beam search (Stahlberg & Byrne 2019): the share of sources whose beam output is less likely
than the certified exact mode, against beam size, with Wilson 95% CIs; greedy search is a separate marker at k = 1.

A search error is the ``search_error`` column of ``analysis.likelihood`` (the output's log-probability is below the
mode's by more than a tolerance); sources without a certified mode have none and are not counted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis import frames, stats
from figures import style

__all__ = ["REQUIRES", "draw", "plot"]

_COLUMNS = ("method", "family", "beam_size", "rank", "search_error", "certified")


def _beam_rows(df: pd.DataFrame) -> pd.DataFrame:
    beams = style.beam_rows(df)
    beams = beams.assign(search_error=frames.numeric(beams["search_error"]))
    return beams[beams["search_error"].notna()]


def _unusable(df: pd.DataFrame) -> str | None:
    """Why ``df``'s rows cannot be drawn (no beam rows with a certified mode to compare with), or None."""
    if _beam_rows(df).empty:
        return "no rank-0 beam<k> rows with a search_error (no certified exact mode to compare with)"
    return None


def draw(df: pd.DataFrame) -> Figure:
    """Search-error rate (% of sources) against beam size k (log scale)."""
    beams = _beam_rows(df)
    curve = stats.rate_ci(beams, "search_error", by=("beam_size",)).sort_values("beam_size")
    greedy = frames.rows(df, family="greedy")
    greedy = greedy.assign(search_error=frames.numeric(greedy["search_error"]))

    with style.paper():
        fig, (ax,) = style.new_figure(height=2.4)
        ks = curve["beam_size"].to_numpy(dtype=float)
        rate, lo, hi = (100 * curve[c].to_numpy(dtype=float) for c in ("value", "lo", "hi"))
        ax.plot(ks, rate, color=style.method_color("beam", 4), lw=1.0, marker="o", zorder=1,
                label=f"beam k ({int(curve['n'].max())} sources)")
        for i, k in enumerate(ks):
            style.errorbar(ax, [k], rate[i], lo[i], hi[i], fmt="o", color=style.method_color("beam", k), zorder=2)
        if greedy["search_error"].notna().any():
            g = stats.rate_ci(greedy, "search_error", by=("method",)).iloc[0]
            style.errorbar(ax, [style.GREEDY_K], 100 * g["value"], 100 * g["lo"], 100 * g["hi"], fmt="s", mfc="none",
                           color=style.method_color("greedy"), label="greedy", zorder=3)
        style.beam_axis(ax, [int(k) for k in ks])
        ax.set_ylim(-3, 103)
        ax.set_yticks(np.arange(0, 101, 25))
        ax.set_ylabel("search errors (% of sources)")
        note = "below the certified exact mode; Wilson 95% CI"
        if n := style.n_uncertified(df):
            note += f"\n{n} sources without a certified mode excluded"
        fig.legend(title=note, loc="outside upper center", ncols=2, title_fontsize=6.5)
    return fig


REQUIRES = style.Requires("search errors", _COLUMNS, rows=_unusable)
plot = REQUIRES.plot(draw)
