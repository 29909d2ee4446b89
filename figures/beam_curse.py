"""The beam search curse (Koehn & Knowles 2017; Stahlberg & Byrne 2019, "On NMT search errors and model errors"):
as the beam widens, the outputs grow more likely but shorter, emptier and worse, and the exact mode is the limit.

Three panels over beam size k: corpus BLEU (bootstrap 95% CI over sources), the share of empty outputs (Wilson 95%
CI) and the mean model log-probability (nats, bootstrap CI). The certified exact mode (and the exact non-empty mode
when the run has it) is a dashed horizontal line with its CI as a light band; greedy search, if present, is a
separate marker at k = 1.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from analysis import frames, methods, stats
from figures import style

__all__ = ["REQUIRES", "draw", "plot"]

_COLUMNS = ("method", "family", "beam_size", "rank", "bleu_stats", "empty", "logprob", "certified", "example_id")
_EXACT = ("exact", "exact_nonempty")


def _exact_rows(df: pd.DataFrame) -> pd.DataFrame:
    exact = frames.rows(df)
    return exact[exact["family"].isin(_EXACT) & frames.is_true(exact["certified"])]


def _unusable(df: pd.DataFrame) -> str | None:
    """Why ``df``'s rows cannot be drawn (no beam search rows with references to score), or None."""
    beams = style.beam_rows(df)
    if beams.empty:
        return "no rank-0 rows of beam search"
    if beams["bleu_stats"].isna().all():
        return "no references to score the beams' BLEU against"
    return None


def _panels(df: pd.DataFrame, group: str) -> dict[str, pd.DataFrame]:
    """Per panel, [group, value, lo, hi] with values in the plotted units (BLEU points, %, nats)."""
    by = (group,)
    rate = stats.rate_ci(df, "empty", by=by)
    return {
        "bleu": stats.corpus_ci(df[df["bleu_stats"].notna()], "bleu", by=by),
        "empty": rate.assign(value=100 * rate["value"], lo=100 * rate["lo"], hi=100 * rate["hi"]),
        "logprob": stats.corpus_ci(df, "logprob", by=by),
    }


def _errorbar(ax: Axes, x: float, row: pd.DataFrame, **kwargs: Any) -> None:
    style.errorbar(ax, [x], row["value"], row["lo"], row["hi"], **kwargs)


def draw(df: pd.DataFrame) -> Figure:
    """Corpus BLEU, empty outputs (%) and mean log-probability (nats) against beam size, exact mode as reference."""
    beams = style.beam_rows(df)
    exact = _exact_rows(df)
    greedy = frames.rows(df, family="greedy")
    beam_panels = _panels(beams, "beam_size")
    exact_panels = _panels(exact, "family") if not exact.empty else {}
    greedy_panels = _panels(greedy, "method") if not greedy.empty else {}
    sizes = sorted(beams["beam_size"].unique())
    titles = {"bleu": "corpus BLEU", "empty": "empty outputs (%)", "logprob": "mean log-probability (nats)"}

    with style.paper():
        fig, axes = style.new_figure(3, width="double", height=2.0)
        for ax, (panel, label) in zip(axes, titles.items(), strict=True):
            curve = beam_panels[panel].sort_values("beam_size")
            ks = curve["beam_size"].to_numpy(dtype=float)
            ax.plot(ks, curve["value"], color=style.method_color("beam", 4), lw=1.0, zorder=1)
            for k in ks:
                _errorbar(ax, k, curve[curve["beam_size"] == k], fmt="o",
                          color=style.method_color("beam", k), zorder=2)
            if panel in greedy_panels:
                _errorbar(ax, style.GREEDY_K, greedy_panels[panel], fmt="s", mfc="none",
                          color=style.method_color("greedy"), label="greedy", zorder=3)
            lines = exact_panels[panel].set_index("family") if exact_panels else pd.DataFrame()
            for family in (f for f in methods.FAMILIES if f in lines.index):
                line, color = lines.loc[family], style.method_color(family)
                ax.axhline(line["value"], color=color, ls="--", lw=1.0, label=f"{methods.display(family)} mode")
                ax.axhspan(line["lo"], line["hi"], color=color, alpha=0.12, lw=0)
            style.beam_axis(ax, sizes)
            ax.set_ylabel(label)
        note = f"beam k (95% CI, {beams['example_id'].nunique()} sources)"
        if n := style.n_uncertified(df):
            note += f"; exact: {n} uncertified excluded"
        handles, labels = axes[0].get_legend_handles_labels()
        beam_handle = Line2D([], [], color=style.method_color("beam", 4), marker="o", lw=1.0)
        fig.legend([beam_handle, *handles], [note, *labels], loc="outside upper center", ncols=len(handles) + 1)
    return fig


REQUIRES = style.Requires("the beam curse", _COLUMNS, rows=_unusable)
plot = REQUIRES.plot(draw)
