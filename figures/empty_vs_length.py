"""How often is the exact mode the empty output, as a function of source length? (Stahlberg & Byrne 2019 found the
empty translation to be the mode for about half of the sources, more often the longer the source.)

Sources are binned by length in model tokens (quantile bins); each bin's share of empty certified modes is drawn
with a Wilson 95% CI, over a logistic regression of emptiness on source length (``analysis.stats.logistic_fit``)
with its delta-method 95% band. Only certified modes count: an uncertified "mode" is just the best output found
within the budget, and the number excluded is given in the legend.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis import frames, stats
from figures import style

__all__ = ["REQUIRES", "draw", "plot"]

log = logging.getLogger(__name__)

_COLUMNS = ("family", "rank", "certified", "empty", "source_tokens")
BINS = 8
"""At most this many source-length bins (fewer when sources have fewer distinct lengths)."""


def _modes(df: pd.DataFrame) -> pd.DataFrame:
    """Certified exact modes with a known emptiness, ``empty`` as bool and ``source_tokens`` as float."""
    modes = frames.rows(df, family="exact")
    modes = modes[frames.is_true(modes["certified"]) & modes["empty"].notna()]
    modes = modes.assign(empty=modes["empty"].astype(bool), source_tokens=frames.numeric(modes["source_tokens"]))
    return modes[modes["source_tokens"].notna()]


def _unusable(df: pd.DataFrame) -> str | None:
    """Why ``df``'s rows cannot be drawn (no certified exact modes), or None."""
    if len(_modes(df)) < 2:
        return "fewer than 2 rank-0 certified exact rows with a source length"
    return None


def draw(df: pd.DataFrame) -> Figure:
    """Share of sources whose certified exact mode is empty (%) against source length (tokens)."""
    modes = _modes(df)
    bins = pd.qcut(modes["source_tokens"], q=min(BINS, modes["source_tokens"].nunique()), labels=False,
                   duplicates="drop")
    binned = modes.assign(bin=bins)
    points = stats.rate_ci(binned, "empty", by=("bin",)).merge(
        binned.groupby("bin", as_index=False)["source_tokens"].mean(), on="bin")
    fit_note = None
    try:
        _, fit = stats.logistic_fit(modes, x="source_tokens", y="empty")
    except ValueError as err:
        # all modes empty, none empty, or lengths that separate them perfectly: no finite maximum-likelihood fit
        fit, fit_note = None, "no logistic fit (one class only, or perfectly separated)"
        log.info("empty_vs_length: %s", err)

    with style.paper():
        fig, (ax,) = style.new_figure(height=2.6)
        color = style.method_color("exact")
        if fit is not None:
            ax.fill_between(fit["x"], 100 * fit["lo"], 100 * fit["hi"], color=color, alpha=0.15, lw=0)
            ax.plot(fit["x"], 100 * fit["p"], color=color, label="logistic fit (95% CI)")
        label = f"binned sources (Wilson 95% CI), {len(modes)} certified"
        if n := style.n_uncertified(df):
            label += f", {n} uncertified excluded"
        style.errorbar(ax, points["source_tokens"], 100 * points["value"], 100 * points["lo"], 100 * points["hi"],
                       fmt="o", color=color, mfc="white", label=label, zorder=3)
        ax.set_ylim(-3, 103)
        ax.set_yticks(np.arange(0, 101, 25))
        ax.set_xlabel("source length (tokens)")
        ax.set_ylabel("exact mode is empty (% of sources)")
        fig.legend(loc="outside upper center", title=fit_note, title_fontsize=6.5)
    return fig


REQUIRES = style.Requires("empty modes against source length", _COLUMNS, rows=_unusable)
plot = REQUIRES.plot(draw)
