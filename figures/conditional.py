"""Conditional beam search against its baselines and ablations over beam size k (conditional beam search on
p(y | x, A) as in FUDGE, Yang & Klein 2021, and "MAP's not dead yet", Yoshida et al. 2024): one row of panels per
model, one line per beam family (plain, non-empty, minimum length, truncated, filtered by A, conditional).

(a) the share of outputs lacking the attribute A (a search that returned nothing counts as lacking it; Wilson 95%
CIs); (b) the mean log-likelihood (nats, bootstrap 95% CIs over sources) with the exact conditional mode as a
dashed line, its mean over the same sources, and its CI as a light band; (c) corpus BLEU (bootstrap CIs) for a model
with references, else the mean output length in tokens, with the exact conditional mode likewise. The legend says
on how many sources the exact conditional search was certified; its uncertified results are drawn too. Families are
nudged apart along k so that their intervals do not hide one another.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure

from analysis import frames, methods, stats
from analysis.conditional import BEAM_FAMILIES, satisfies
from figures import style

__all__ = ["REQUIRES", "draw", "plot"]

_COLUMNS = ("model", "dataset", "example_id", "method", "family", "beam_size", "rank", "logprob", "attribute_holds",
            "certified", "n_tokens", "bleu_stats")
_EXACT = "exact_conditional"
_NUDGE = 1.07
"""Ratio between neighbouring families' x positions on the log k axis."""
_MARKERS = ("o", "s", "^", "v", "D", "P")
_FAMILY_LABELS = {methods.display(family): i for i, family in enumerate(BEAM_FAMILIES)}
_ROW_HEIGHT_IN = 1.9
_LEGEND_HEIGHT_IN = 0.7


def _beam_family_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rank-0 rows of the beam families with a beam size, ``beam_size`` as int."""
    top = frames.rows(df)
    k = frames.numeric(top["beam_size"])
    keep = (top["family"].isin(BEAM_FAMILIES) & ~np.isnan(k)).to_numpy()
    return top[keep].assign(beam_size=k[keep].astype(int))


def _unusable(df: pd.DataFrame) -> str | None:
    """Why ``df``'s rows cannot be drawn (not a conditional run, or no beam rows), or None."""
    if _beam_family_rows(df).empty:
        return f"no rank-0 rows of the beam families {list(BEAM_FAMILIES)} with a beam size"
    return None


def _family_color(family: str) -> str:
    # plain beam in its darkest shade: the lighter ones are close to the non-empty beam's sky blue
    return style.method_color(family, style.BEAM_K_MAX)


def _panels(rows: pd.DataFrame, by: tuple[str, ...], with_bleu: bool) -> dict[str, pd.DataFrame]:
    """Per panel, [*by, value, lo, hi] in the plotted units (%, nats, BLEU points or tokens)."""
    lacks = stats.rate_ci(rows.assign(lacks=~satisfies(rows)), "lacks", by=by)
    third = (stats.corpus_ci(rows, "bleu", by=by) if with_bleu
             else stats.corpus_ci(rows, "n_tokens", by=by))
    return {"lacks": lacks.assign(value=100 * lacks["value"], lo=100 * lacks["lo"], hi=100 * lacks["hi"]),
            "logprob": stats.corpus_ci(rows, "logprob", by=by), "third": third}


def _reference(ax: Axes, line: pd.DataFrame, label: str) -> None:
    """The exact conditional mode's value as a dashed line with its CI as a band."""
    if line.empty or pd.isna(line["value"].iloc[0]):
        return
    color = style.method_color(_EXACT)
    ax.axhline(line["value"].iloc[0], color=color, ls="--", lw=1.0, label=label, zorder=1)
    ax.axhspan(line["lo"].iloc[0], line["hi"].iloc[0], color=color, alpha=0.12, lw=0)


def _draw_model(row: SubFigure, df: pd.DataFrame, model: str, several: bool) -> None:
    axes = list(row.subplots(1, 3))
    beams = _beam_family_rows(df[df["model"] == model])
    with_bleu = bool(beams["bleu_stats"].notna().any())
    curves = _panels(beams, ("family", "beam_size"), with_bleu)
    exact = frames.rows(df[df["model"] == model], family=_EXACT)
    exact = exact[exact["example_id"].isin(set(beams["example_id"]))]
    lines = _panels(exact, ("family",), with_bleu) if not exact.empty else {}
    families = [f for f in BEAM_FAMILIES if f in set(beams["family"])]
    for ax, panel in zip(axes, ("lacks", "logprob", "third"), strict=True):
        for i, family in enumerate(families):
            curve = curves[panel][curves[panel]["family"] == family].sort_values("beam_size")
            x = curve["beam_size"].to_numpy(dtype=float) * _NUDGE ** (i - (len(families) - 1) / 2)
            style.errorbar(ax, x, curve["value"], curve["lo"], curve["hi"], fmt="-",
                           marker=_MARKERS[BEAM_FAMILIES.index(family) % len(_MARKERS)],
                           color=_family_color(family), label=methods.display(family), zorder=2)
        if panel in lines and panel != "lacks":  # the exact conditional mode has A by construction
            certified = int(frames.is_true(exact["certified"]).sum())
            whose = f", {model}" if several else ""
            _reference(ax, lines[panel], f"exact conditional mode{whose} (certified on {certified}/{len(exact)})")
        style.beam_axis(ax, sorted(beams["beam_size"].unique()))
    axes[0].set_ylabel("outputs lacking A (%)")
    axes[1].set_ylabel("mean log-likelihood (nats)")
    axes[2].set_ylabel("corpus BLEU" if with_bleu else "mean output length (tokens)")
    attribute = f", A = {beams['attribute'].iloc[0]}" if "attribute" in beams.columns else ""
    # a row title, not an axes title: a long model or attribute name would widen the first column
    row.suptitle(f"{model}{attribute} ({beams['example_id'].nunique()} sources, 95% CI)", fontsize=8)


def draw(df: pd.DataFrame) -> Figure:
    """Outputs lacking A (%), mean log-likelihood (nats) and BLEU (or length) against k, one row per model."""
    models = sorted(_beam_family_rows(df)["model"].unique())
    with style.paper():
        fig = Figure(figsize=(style.DOUBLE_COLUMN_IN, _ROW_HEIGHT_IN * len(models) + _LEGEND_HEIGHT_IN),
                     layout="constrained")
        rows = fig.subfigures(len(models), 1, squeeze=False)[:, 0]
        for row, model in zip(rows, models, strict=True):
            _draw_model(row, df, model, several=len(models) > 1)
        legend: dict[str, Artist] = {}
        for ax in fig.axes:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                legend.setdefault(label, handle)
        # families in table order, then the exact conditional modes
        labels = sorted(legend, key=lambda label: (label not in _FAMILY_LABELS, _FAMILY_LABELS.get(label, 0), label))
        fig.legend([legend[label] for label in labels], labels, loc="outside lower center", ncols=4)
    return fig


REQUIRES = style.Requires("conditional beam search", _COLUMNS, scope="per_model", rows=_unusable)
plot = REQUIRES.plot(draw)
