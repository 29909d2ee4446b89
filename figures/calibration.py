"""How well the attribute classifier q(A | x, prefix) of conditional beam search is calibrated and how early it
knows: per model, a reliability diagram (Guo et al. 2017, "On calibration of modern neural networks") and the
held-out accuracy by prefix position.

Reads the calibration table of the conditional experiment (``calibration.parquet``: ``models.classifier``'s
held-out ``reliability`` and ``by_position`` tables, tidy, with ``model``, ``attribute``, ``table``, ``ece`` and
``held_out_accuracy``), not result rows. Left: the observed share of outputs with A against the mean predicted q
per probability bin, marker area by the bin's number of prefixes, the diagonal as perfect calibration. Right:
accuracy (q >= 0.5 against the label) by prefix length t, against always predicting the majority label at that
position, max(rate, 1 - rate).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from figures import style

__all__ = ["REQUIRES", "draw", "plot"]

_COLUMNS = ("model", "attribute", "table", "ece", "held_out_accuracy", "n", "mean_q", "positive_rate", "position",
            "accuracy")
_COLOR = style.FAMILY_COLORS["conditional_beam"]
_BASELINE_COLOR = "#999999"
_MAX_AREA = 60.0
"""Marker area (points^2) of the fullest reliability bin."""
_ROW_HEIGHT_IN = 2.1
_LEGEND_HEIGHT_IN = 0.4


def _unusable(df: pd.DataFrame) -> str | None:
    """Why the calibration table ``df``'s rows cannot be drawn, or None."""
    if not (df["table"] == "reliability").any():
        return "no reliability rows"
    return None


def draw(df: pd.DataFrame) -> Figure:
    """Per model: reliability diagram (observed vs predicted) and held-out accuracy (%) by prefix position."""
    models = sorted(df.loc[df["table"] == "reliability", "model"].unique())
    with style.paper():
        fig = Figure(figsize=(style.DOUBLE_COLUMN_IN, _ROW_HEIGHT_IN * len(models) + _LEGEND_HEIGHT_IN),
                     layout="constrained")
        rows = fig.subfigures(len(models), 1, squeeze=False)[:, 0]
        for row, model in zip(rows, models, strict=True):
            ax_rel, ax_pos = row.subplots(1, 2)
            ours = df[df["model"] == model]
            bins = ours[(ours["table"] == "reliability") & (ours["n"] > 0)].sort_values("mean_q")
            first = ours.iloc[0]
            ax_rel.plot([0, 1], [0, 1], color=_BASELINE_COLOR, ls=":", lw=0.8, label="perfect calibration")
            ax_rel.plot(bins["mean_q"], bins["positive_rate"], color=_COLOR, lw=0.8)
            ax_rel.scatter(bins["mean_q"], bins["positive_rate"], s=_MAX_AREA * bins["n"] / bins["n"].max(),
                           color=_COLOR, zorder=3, label="bin (area: prefixes)")
            ax_rel.set_xlim(-0.02, 1.02)
            ax_rel.set_ylim(-0.02, 1.02)
            ax_rel.set_aspect("equal")
            ax_rel.set_xlabel("mean predicted q(A | x, prefix)")
            ax_rel.set_ylabel("observed share with A")
            ax_rel.set_title(f"reliability: ECE {first['ece']:.3f}", loc="left", fontsize=7)
            row.suptitle(f"{model}, A = {first['attribute']}", fontsize=8)
            by_position = ours[ours["table"] == "by_position"].sort_values("position")
            rate = by_position["positive_rate"].to_numpy(dtype=float)
            ax_pos.plot(by_position["position"], 100 * by_position["accuracy"], color=_COLOR, marker="o",
                        markersize=2.5, label="classifier (q >= 0.5)")
            ax_pos.plot(by_position["position"], 100 * np.maximum(rate, 1 - rate), color=_BASELINE_COLOR, ls="--",
                        label="always the majority label")
            ax_pos.set_xlabel("prefix position t (tokens)")
            ax_pos.set_ylabel("held-out accuracy (%)")
            ax_pos.set_title(f"held-out accuracy {100 * first['held_out_accuracy']:.1f}% "
                             f"({int(by_position['n'].sum())} prefixes)", loc="left", fontsize=7)
        handles, labels = fig.axes[0].get_legend_handles_labels()
        more, more_labels = fig.axes[1].get_legend_handles_labels()
        fig.legend([*handles, *more], [*labels, *more_labels], loc="outside lower center", ncols=4)
    return fig


REQUIRES = style.Requires("the classifier calibration", _COLUMNS, scope="any", rows=_unusable)
plot = REQUIRES.plot(draw)
