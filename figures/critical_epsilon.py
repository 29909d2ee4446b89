"""Critical noise weight against population entropy: how much low-entropy noise it takes for the mode of
(1 - eps) P_pop + eps Q to turn degenerate (``analysis.theory``, Theorem 1 and Corollary 4; Yoshida 2024;
"MAP's not dead yet", ACL 2024).

Curves: the closed form eps* = 1 / (1 + q exp(H_inf(P_pop))) against the population's min-entropy
H_inf = -log max P_pop, for each noise concentration q in the table and, for contrast, for high-entropy noise
spread uniformly on ``REFERENCE_NOISE_SUPPORTS`` outputs (Theorem 5). Points: the toy mixtures of
``experiments.contamination_toy.toy_check`` at (H_inf, eps), filled where certified exact search found a degenerate
mode and hollow where it found a proper one; the theory holds where filled points lie above their curve and hollow
ones below (the points a thousandth of a log-odds unit from eps* sit on it). A red cross marks any mixture where
search and theory disagree. Uncertified searches are left out, and counted in the legend.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from analysis import frames, theory
from figures import style

__all__ = ["REFERENCE_NOISE_SUPPORTS", "REQUIRES", "draw", "plot"]

_COLUMNS = ("kind", "min_entropy", "noise_max_prob", "eps", "mode_is_degenerate", "predicted_degenerate",
            "certified")
REFERENCE_NOISE_SUPPORTS = (100, 10_000)
"""Noise uniform on this many outputs (q = 1/n) is drawn as a closed-form curve alongside the table's own noise."""

_CURVE_COLORS = ("#000000", "#0072B2", "#009E73", "#CC79A7", "#56B4E9")
_MARKERS = {"iid": "o", "tabular": "s", "ngram": "^"}
_KIND_LABELS = {"iid": "i.i.d. tokens", "tabular": "random table", "ngram": "bigram model"}


def _certified(df: pd.DataFrame) -> pd.DataFrame:
    return df[frames.is_true(df["certified"])]


def _unusable(df: pd.DataFrame) -> str | None:
    """Why ``df`` (a ``toy_check`` table) cannot be drawn, or None."""
    if _certified(df).empty:
        return "no certified toy mixtures"
    return None


def _noise_label(q: float) -> str:
    n = round(1 / q)
    if n == 1:
        return "noise on one output (empty, copy)"
    return f"noise uniform on {n:,} outputs" if np.isclose(n * q, 1) else f"noise with max mass {q:.3g}"


def draw(df: pd.DataFrame) -> Figure:
    """eps* (log scale) against population min-entropy (nats): closed-form curves, toy mixtures as points."""
    points = _certified(df)
    qs = sorted(set(points["noise_max_prob"].astype(float)), reverse=True)
    qs += [1 / n for n in REFERENCE_NOISE_SUPPORTS if not np.isclose(qs, 1 / n).any()]
    colors = {q: _CURVE_COLORS[i % len(_CURVE_COLORS)] for i, q in enumerate(qs)}
    h = np.linspace(0, 1.05 * float(points["min_entropy"].max()) + 0.1, 200)

    with style.paper():
        fig, (ax,) = style.new_figure(height=3.2)
        for q in qs:
            ax.plot(h, theory.critical_epsilon(np.exp(-h), q), color=colors[q], label=_noise_label(q),
                    ls="-" if q in set(points["noise_max_prob"]) else "--")
        for kind, group in points.groupby("kind", sort=True):
            for q, by_q in group.groupby("noise_max_prob"):
                degenerate = frames.is_true(by_q["mode_is_degenerate"])
                ax.scatter(by_q["min_entropy"], by_q["eps"], marker=_MARKERS.get(str(kind), "D"), s=14, lw=0.7,
                           edgecolors=colors[q], facecolors=np.where(degenerate, colors[q], "white"), zorder=3)
        wrong = points[frames.is_true(points["mode_is_degenerate"]) != frames.is_true(points["predicted_degenerate"])]
        if len(wrong):
            ax.scatter(wrong["min_entropy"], wrong["eps"], marker="x", s=30, color="#D00000", zorder=4,
                       label=f"search disagrees with theory ({len(wrong)})")
        handles, _ = ax.get_legend_handles_labels()
        handles += [Line2D([], [], ls="", marker=_MARKERS.get(str(k), "D"), color="0.4", mfc="white",
                           label=_KIND_LABELS.get(str(k), str(k))) for k in sorted(set(points["kind"]))]
        solved = "exact mode degenerate (filled) / proper (hollow)"
        if n := int((~frames.is_true(df["certified"])).sum()):
            solved += f", {n} uncertified excluded"
        handles.append(Line2D([], [], ls="", marker="o", color="0.4", label=solved))
        ax.set_yscale("log")
        ax.set_xlabel("population min-entropy $-\\log \\max P_{\\mathrm{pop}}$ (nats)")
        ax.set_ylabel("noise weight $\\epsilon$ (curves: $\\epsilon^*$)")
        fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=6)
    return fig


REQUIRES = style.Requires("the critical epsilon", _COLUMNS, scope="any", rows=_unusable)
plot = REQUIRES.plot(draw)
