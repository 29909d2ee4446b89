"""Which search finds the likelier output with the attribute A: for each model, the pairwise win rates
(``analysis.conditional.win_rates``) of the methods at the model's largest beam size and the exact searches, as a
heatmap. A cell is the share of sources where the row method's output has A and is likelier than the column's (or
the column's lacks A); a pair's two cells leave the ties out, so they need not add up to 100%.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis import frames, methods
from analysis.conditional import BEAM_FAMILIES, largest_beam_sizes, win_rates
from figures import style

__all__ = ["REQUIRES", "draw", "plot"]

_COLUMNS = ("model", "dataset", "example_id", "method", "family", "beam_size", "rank", "logprob", "attribute_holds",
            "wall_s")
_CMAP = "viridis"
_DARK_BELOW = 60.0
"""Cells (in %) below this have white annotations: viridis is dark at its low end."""


def _unusable(df: pd.DataFrame) -> str | None:
    """Why ``df``'s rows cannot be drawn (no beam rows, or fewer than two methods to compare), or None."""
    sizes = largest_beam_sizes(df)
    if not sizes:
        return f"no rank-0 rows of the beam families {list(BEAM_FAMILIES)} with a beam size"
    if all(len(win_rates(df, model=m, beam_size=k)) < 2 for m, k in sizes.items()):
        return "fewer than two methods at the largest beam size to compare"
    return None


def draw(df: pd.DataFrame) -> Figure:
    """Per model, a heatmap of win rates (%) between methods at its largest beam size and the exact searches."""
    sizes = largest_beam_sizes(df)
    with style.paper():
        fig, axes = style.new_figure(len(sizes), width="double", height=3.4)
        image = None
        for ax, (model, k) in zip(axes, sizes.items(), strict=True):
            rates = 100 * win_rates(df, model=model, beam_size=k)
            of = methods.keys(df[df["model"] == model])
            labels = [methods.display(*of[m]) for m in rates.index]
            image = ax.imshow(np.ma.masked_invalid(rates.to_numpy(dtype=float)), cmap=_CMAP, vmin=0, vmax=100)
            for (i, j), value in np.ndenumerate(rates.to_numpy(dtype=float)):
                if not np.isnan(value):
                    ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=5.5,
                            color="white" if value < _DARK_BELOW else "black")
            ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", rotation_mode="anchor", fontsize=6)
            ax.set_yticks(range(len(labels)), labels, fontsize=6)
            ax.spines[:].set_visible(False)
            n = frames.rows(df[df["model"] == model])["example_id"].nunique()
            ax.set_title(f"{model}\nk={k}, {n} sources", fontsize=7)
            ax.set_xlabel("column method")
            ax.set_ylabel("row method")
        if image is not None:
            fig.colorbar(image, ax=axes, shrink=0.8, label="sources where row beats column (%)")
    return fig


REQUIRES = style.Requires("conditional win rates", _COLUMNS, scope="per_model", rows=_unusable)
plot = REQUIRES.plot(draw)
