"""Share of certified exact modes that are empty, against source length, one line per training contamination rate
eps of the empty noise (and the clean control): the theory predicts that longer sources, whose best translation is
less probable, turn empty first (Yoshida 2024). Sources are binned by length quartiles; Wilson 95% CIs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis import frames, stats
from figures import style

__all__ = ["REQUIRES", "draw", "plot"]

_COLUMNS = ("noise", "epsilon", "family", "rank", "certified", "n_tokens", "source_tokens")
BINS = 4


def _exact(df: pd.DataFrame) -> pd.DataFrame:
    """Rank-0 exact rows of the empty-noise models and the clean control."""
    exact = frames.rows(df, family="exact")
    return exact[exact["noise"].isin(["none", "empty"])]


def _modes(df: pd.DataFrame) -> pd.DataFrame:
    exact = _exact(df)
    exact = exact[frames.is_true(exact["certified"])]
    return exact.assign(empty=frames.numeric(exact["n_tokens"]) == 0)


def _unusable(df: pd.DataFrame) -> str | None:
    """Why the rows cannot be drawn, or None."""
    if _modes(df)["source_tokens"].nunique() < 2:
        return "fewer than two source lengths among certified exact modes of the empty-noise models"
    return None


def draw(df: pd.DataFrame) -> Figure:
    """Empty-mode share by source-length bin, one line per eps."""
    modes = _modes(df)
    lengths = frames.numeric(modes["source_tokens"])
    edges = np.unique(np.quantile(lengths, np.linspace(0, 1, BINS + 1)))
    modes = modes.assign(bin=np.clip(np.searchsorted(edges, lengths, side="right") - 1, 0, len(edges) - 2))
    mids = {b: lengths[modes["bin"].to_numpy() == b].mean() for b in modes["bin"].unique()}
    table = stats.rate_ci(modes, "empty", by=("epsilon", "bin"))
    table["x"] = table["bin"].map(mids)
    epsilons = sorted(table["epsilon"].unique())
    shades = np.linspace(0.25, 1.0, len(epsilons))
    with style.paper():
        fig, (ax,) = style.new_figure(1, width="single", height=2.4)
        for eps, shade in zip(epsilons, shades, strict=True):
            t = table[table["epsilon"] == eps].sort_values("x")
            style.errorbar(ax, t["x"], 100 * t["value"], 100 * t["lo"], 100 * t["hi"], fmt="o-",
                           color=(0.84 * shade, 0.37 * shade, 0.0), label=f"ε = {eps:g}")
        ax.set_xlabel("source length (tokens, quartile-bin mean)")
        ax.set_ylabel("certified exact modes that are empty (%)")
        n = modes["example_id"].nunique()
        uncertified = len(_exact(df)) - len(modes)
        ax.legend(title=f"empty noise, {n} sources" + (f"; {uncertified} uncertified excluded" if uncertified else ""),
                  loc="upper left")
    return fig


REQUIRES = style.Requires("contamination by length", _COLUMNS, scope="any", rows=_unusable)
plot = REQUIRES.plot(draw)
