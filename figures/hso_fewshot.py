"""HSO few-shot figures, from ``experiments.hso_fewshot.summary`` tables: accuracy per method and data set (a panel
per data set, a marker per model, 95% bootstrap CIs over test items), and accuracy against HSO steps."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from figures.style import Requires, errorbar, new_figure, paper

__all__ = ["accuracy", "steps"]

MARKERS = ("o", "s", "^", "D")
COLORS = ("#000000", "#D55E00", "#0072B2", "#009E73")
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")  # Okabe-Ito, one per (data set, k)

ACCURACY = Requires("few-shot accuracy per method", ("model", "dataset", "shots", "method", "steps", "calibrated",
                                                      "accuracy", "accuracy_lo", "accuracy_hi"), scope="any")
STEPS = Requires("few-shot accuracy against HSO steps", ("model", "dataset", "shots", "method", "steps",
                                                          "calibrated", "accuracy"), scope="any",
                 rows=lambda df: None if (df["steps"] > 0).any() else "no HSO rows")


def draw_accuracy(table: pd.DataFrame) -> Figure:
    """Accuracy of every method, one panel per (data set, k), one marker per model."""
    panels = sorted(set(zip(table["dataset"], table["shots"], strict=True)))
    models = list(dict.fromkeys(table["model"]))
    with paper():
        fig, axes = new_figure(len(panels), width="double", height=2.4)
        for ax, (dataset, k) in zip(axes, panels, strict=True):
            rows = table[(table["dataset"] == dataset) & (table["shots"] == k)]
            rows = rows.assign(_head=rows["method"] == "head").sort_values(["_head", "calibrated", "steps"],
                                                                           kind="stable")
            methods = list(dict.fromkeys(rows["method"]))
            group = rows.drop_duplicates("method").set_index("method")[["_head", "calibrated"]]
            groups = [tuple(group.loc[m]) for m in methods]
            for i, model in enumerate(models):
                sub = rows[rows["model"] == model].set_index("method").reindex(methods)
                x = np.arange(len(methods)) + (i - (len(models) - 1) / 2) * 0.25
                errorbar(ax, x, 100 * sub["accuracy"], 100 * sub["accuracy_lo"], 100 * sub["accuracy_hi"],
                         fmt=MARKERS[i % 4], color=COLORS[i % 4], label=model, markersize=3)
            for j in range(1, len(methods)):
                if groups[j] != groups[j - 1]:
                    ax.axvline(j - 0.5, color="#cccccc", linewidth=0.5)
            ax.set_xticks(np.arange(len(methods)), methods, rotation=90, fontsize=6)
            ax.set_title(f"{dataset} (k={k}/class)", fontsize=7)
        axes[0].set_ylabel("accuracy (%)")
        axes[0].legend(frameon=False, fontsize=6)
    return fig


def draw_steps(table: pd.DataFrame) -> Figure:
    """Accuracy against HSO steps (0 = ICL), with and without calibration, one panel per model."""
    models = list(dict.fromkeys(table["model"]))
    lm = table[table["method"].str.match(r"^(icl|hso\d+)(\+cc)?$")]
    tasks = sorted(set(zip(lm["dataset"], lm["shots"], strict=True)))
    color = {task: PALETTE[i % len(PALETTE)] for i, task in enumerate(tasks)}
    with paper():
        fig, axes = new_figure(len(models), width="double", height=2.2)
        for ax, model in zip(axes, models, strict=True):
            rows = lm[lm["model"] == model]
            for (dataset, k, cal), g in rows.groupby(["dataset", "shots", "calibrated"]):
                g = g.sort_values("steps")
                ax.plot(g["steps"], 100 * g["accuracy"], marker="o", markersize=3, color=color[(dataset, k)],
                        linestyle="--" if cal else "-", label=f"{dataset} k={k}{' +cc' if cal else ''}")
            ax.set_xlabel("HSO steps on the demonstrations")
            ax.set_ylabel("accuracy (%)")
            ax.set_title(model)
        entries: dict[str, Any] = {}  # label -> handle, every model's lines once
        for ax in axes:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                entries.setdefault(label, handle)
        axes[-1].legend(entries.values(), entries.keys(), frameon=False, fontsize=5, loc="upper left",
                        bbox_to_anchor=(1.02, 1.0))
    return fig


accuracy = ACCURACY.plot(draw_accuracy)
steps = STEPS.plot(draw_steps)
