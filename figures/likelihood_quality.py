"""Is a more likely output a better one? Quality against likelihood *within* a source (the inadequacy of the mode,
Eikema & Aziz 2020; the likelihood trap, Zhang et al. 2021, "Trading off diversity and quality").

Every distinct output of a source (samples, beam and exact search outputs, length-conditional modes) is a
candidate. Its log-probability becomes a quantile among that source's candidates (0 = least, 1 = most likely), so
sources with different length and entropy share one axis; ``analysis.stats.binned_curve`` gives mean chrF per
quantile bin with a t interval. Each search method's best outputs are overlaid at their mean (quantile, chrF),
with bootstrap 95% CIs over sources on both axes.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from analysis import frames, methods, stats
from figures import style

__all__ = ["REQUIRES", "draw", "plot"]

_COLUMNS = ("example_id", "method", "family", "beam_size", "rank", "text", "token_ids", "logprob", "chrf")
MIN_CANDIDATES = 3
"""Distinct candidates a source needs to enter the curve (as for ``analysis.stats.rank_correlation``)."""
_KEY = ["example_id", "output"]


def _with_output(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(output=df["token_ids"].map(lambda ids: " ".join(map(str, ids))))


def _candidates(df: pd.DataFrame) -> pd.DataFrame:
    """Distinct outputs (by token ids) per source with a log-probability and a chrF, their ``quantile`` among the
    source's candidates (average rank / count, as ``binned_curve`` computes it) and an ``output`` key."""
    cands = df[df["text"].notna() & df["logprob"].notna() & df["chrf"].notna()]
    cands = _with_output(cands).drop_duplicates(_KEY)
    cands = cands.assign(logprob=frames.numeric(cands["logprob"]), chrf=frames.numeric(cands["chrf"]))
    cands = cands[cands.groupby("example_id")["output"].transform("size") >= MIN_CANDIDATES]
    return cands.assign(quantile=cands.groupby("example_id")["logprob"].rank(method="average", pct=True))


def _unusable(df: pd.DataFrame) -> str | None:
    """Why ``df``'s rows cannot be drawn (no source with enough distinct candidates), or None."""
    if _candidates(df).empty:
        return f"no source has {MIN_CANDIDATES} distinct outputs with a logprob and chrF (are there samples?)"
    return None


def draw(df: pd.DataFrame) -> Figure:
    """Mean chrF (95% CI band) against likelihood quantile within source, search methods overlaid."""
    cands = _candidates(df)
    curve = stats.binned_curve(cands, x="logprob", y="chrf", bins=10, within="example_id")
    searches = frames.rows(df)
    searches = searches[searches["family"].isin(methods.families(ranked=True)) & searches["text"].notna()]
    searches = _with_output(searches)[["example_id", "method", "family", "beam_size", "output"]].merge(
        # "chrf" names corpus chrF in corpus_ci; under another name the column is averaged over sentences
        cands[[*_KEY, "quantile", "chrf"]].rename(columns={"chrf": "sentence_chrf"}), on=_KEY)
    points = stats.corpus_ci(searches, "quantile", rank=None).merge(
        stats.corpus_ci(searches, "sentence_chrf", rank=None), on="method", suffixes=("_q", "_c"))

    with style.paper():
        fig, (ax,) = style.new_figure(height=3.0)
        color = style.method_color("sample")
        ax.fill_between(curve["x_mid"], curve["lo"], curve["hi"], color=color, alpha=0.3, lw=0)
        ax.plot(curve["x_mid"], curve["y_mean"], color="#555555", marker=".",
                label=f"all candidates\n({cands['example_id'].nunique()} sources, "
                      f"{len(cands) / cands['example_id'].nunique():.0f} per source)")
        of = methods.keys(searches)
        for method in methods.order(searches):
            p = points[points["method"] == method].iloc[0]
            family, k = of[method]
            ax.errorbar([p["value_q"]], [p["value_c"]],
                        xerr=[[p["value_q"] - p["lo_q"]], [p["hi_q"] - p["value_q"]]],
                        yerr=[[p["value_c"] - p["lo_c"]], [p["hi_c"] - p["value_c"]]],
                        fmt="o", color=style.method_color(family, k), label=methods.display(family, k), zorder=3)
        ax.set_xlim(0, 1.02)
        ax.set_xlabel("likelihood quantile within source (1 = most likely)")
        ax.set_ylabel("chrF (sentence, mean, 95% CI)")
        # below the axes: one entry per search method would cover the curve
        fig.legend(loc="outside lower center", ncols=3)
    return fig


REQUIRES = style.Requires("likelihood against quality", _COLUMNS, rows=_unusable)
plot = REQUIRES.plot(draw)
