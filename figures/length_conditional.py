"""The mode at each length (length-conditional exact search): how likelihood and quality change with the length
an output is forced to have, relative to the reference (Stahlberg & Byrne 2019 and Eikema & Aziz 2020 on the length
bias of the mode; the conditional mode of the contamination argument, DESIGN.md §5).

x is the conditioned length minus the reference's length, both in model tokens (``target_length -
reference_tokens``; ``lq run modes`` searches the lengths ``reference_tokens + length_offsets``), so 0 is the
reference length and every source contributes at the same offsets. Per offset: the mean log-probability (nats) and
the mean sentence chrF of the certified length-conditional modes, with bootstrap 95% CIs that resample sources.
Uncertified modes (the search ran out of budget at that length) are left out and counted in the legend.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from analysis import frames, stats
from figures import style

__all__ = ["REQUIRES", "draw", "plot"]

_COLUMNS = ("family", "example_id", "target_length", "reference_tokens", "logprob", "chrf", "certified")
MIN_SOURCES = 3
"""Offsets with fewer sources are not drawn: their interval would say nothing."""


def _modes(df: pd.DataFrame) -> pd.DataFrame:
    """Certified length-conditional modes with ``offset`` = target_length - reference_tokens and ``sentence_chrf``
    (under its own name: ``chrf`` would mean corpus chrF to ``stats.corpus_ci``)."""
    rows = frames.rows(df, family="length_conditional", rank=None)
    rows = rows.assign(offset=frames.numeric(rows["target_length"]) - frames.numeric(rows["reference_tokens"]),
                       logprob=frames.numeric(rows["logprob"]), sentence_chrf=frames.numeric(rows["chrf"]))
    return rows[frames.is_true(rows["certified"]) & rows["offset"].notna() & rows["logprob"].notna()]


def _unusable(df: pd.DataFrame) -> str | None:
    """Why ``df``'s rows cannot be drawn (no certified length-conditional modes), or None."""
    if _modes(df)["example_id"].nunique() < MIN_SOURCES:
        return f"fewer than {MIN_SOURCES} sources with certified length_conditional rows"
    return None


def draw(df: pd.DataFrame) -> Figure:
    """Mean log-probability (nats) and mean sentence chrF of the length-conditional modes against length offset."""
    modes = _modes(df)
    searched = frames.rows(df, family="length_conditional", rank=None)
    n_excluded = int((searched["text"].notna() & ~frames.is_true(searched["certified"])).sum())
    panels = {"logprob": "log-probability (nats)", "sentence_chrf": "chrF (sentence mean)"}
    color = style.method_color("length_conditional")

    with style.paper():
        fig, axes = style.new_figure(2, width="double", height=2.1)
        for ax, (column, label) in zip(axes, panels.items(), strict=True):
            curve = stats.corpus_ci(modes, column, by=("offset",), rank=None)
            curve = curve[curve["n"] >= MIN_SOURCES].sort_values("offset")
            ax.fill_between(curve["offset"], curve["lo"], curve["hi"], color=color, alpha=0.25, lw=0)
            ax.plot(curve["offset"], curve["value"], color=color, marker="o",
                    label=f"mode at that length (mean, 95% CI; {modes['example_id'].nunique()} sources)")
            ax.axvline(0, color="#555555", ls=":", lw=0.8, label="reference length")
            ax.set_xlabel("conditioned length − reference length (tokens)")
            ax.set_ylabel(label)
        handles, labels = axes[0].get_legend_handles_labels()
        title = f"{n_excluded} uncertified length-conditional modes excluded" if n_excluded else None
        fig.legend(handles, labels, loc="outside upper center", ncols=len(handles), title=title, title_fontsize=6.5)
    return fig


REQUIRES = style.Requires("length-conditional modes", _COLUMNS, rows=_unusable)
plot = REQUIRES.plot(draw)
