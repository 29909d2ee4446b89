"""HSO few-shot figures, from ``experiments.hso_fewshot.summary`` tables: accuracy per method and data set (a panel
per data set, a marker per model, 95% bootstrap CIs over test items), and accuracy against HSO steps."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from figures.style import Requires, errorbar, new_figure, paper

__all__ = ["accuracy", "steps"]

MARKERS = ("o", "s", "^", "D")
COLORS = ("#000000", "#D55E00", "#0072B2", "#009E73")

ACCURACY = Requires("few-shot accuracy per method", ("model", "dataset", "shots", "method", "accuracy",
                                                      "accuracy_lo", "accuracy_hi"), scope="any")
STEPS = Requires("few-shot accuracy against HSO steps", ("model", "dataset", "shots", "method", "steps",
                                                          "calibrated", "accuracy"), scope="any",
                 rows=lambda df: None if (df["steps"] > 0).any() else "no HSO rows")


def draw_accuracy(table: pd.DataFrame) -> Figure:
    """Accuracy of every method, one panel per (data set, k), one marker per model."""
    panels = list(dict.fromkeys(zip(table["dataset"], table["shots"], strict=True)))
    models = list(dict.fromkeys(table["model"]))
    with paper():
        fig, axes = new_figure(len(panels), width="double", height=2.4)
        for ax, (dataset, k) in zip(axes, panels, strict=True):
            rows = table[(table["dataset"] == dataset) & (table["shots"] == k)]
            methods = list(dict.fromkeys(rows["method"]))
            for i, model in enumerate(models):
                sub = rows[rows["model"] == model].set_index("method").reindex(methods)
                x = np.arange(len(methods)) + (i - (len(models) - 1) / 2) * 0.25
                errorbar(ax, x, sub["accuracy"], sub["accuracy_lo"], sub["accuracy_hi"], fmt=MARKERS[i % 4],
                         color=COLORS[i % 4], label=model, markersize=3)
            ax.set_xticks(np.arange(len(methods)), methods, rotation=60, fontsize=6)
            ax.set_title(f"{dataset} (k={k}/class)", fontsize=7)
        axes[0].set_ylabel("accuracy")
        axes[0].legend(frameon=False, fontsize=6)
    return fig


def draw_steps(table: pd.DataFrame) -> Figure:
    """Accuracy against HSO steps (0 = ICL), with and without calibration, one panel per model."""
    models = list(dict.fromkeys(table["model"]))
    lm = table[table["method"].str.match(r"^(icl|hso\d+)(\+cc)?$")]
    with paper():
        fig, axes = new_figure(len(models), width="double", height=2.2)
        for ax, model in zip(axes, models, strict=True):
            rows = lm[lm["model"] == model]
            for (dataset, k, cal), g in rows.groupby(["dataset", "shots", "calibrated"], sort=False):
                g = g.sort_values("steps")
                ax.plot(g["steps"], g["accuracy"], marker="o", linestyle="--" if cal else "-",
                        label=f"{dataset} k={k}{' +cc' if cal else ''}")
            ax.set_xlabel("HSO steps on the demonstrations")
            ax.set_ylabel("accuracy")
            ax.set_title(model)
            ax.legend(frameon=False, fontsize=5)
    return fig


accuracy = ACCURACY.plot(draw_accuracy)
steps = STEPS.plot(draw_steps)
