"""The shared look of the paper figures (method order and colours, rc style, sizes, saving) and the row selections
and table checks every figure makes.

Colours follow the Okabe & Ito (2008) colour-blind-safe palette, one per method family; beam search of width k takes
a shade of a sequential blue palette fixed on a log scale up to ``BEAM_K_MAX``, so beam k has the same colour in
every figure whatever other widths a run holds. The palette has eight colours and the toolkit more families, so
families that never share a run share a colour: the exact conditional mode takes greedy search's, the filtered
beam the exact non-empty mode's and the minimum-length beam the length-conditional modes'. Within one experiment
every family has its own colour.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter
from numpy.typing import ArrayLike

__all__ = [
    "BEAM_K_MAX", "DOUBLE_COLUMN_IN", "FAMILY_COLORS", "GREEDY_K", "METHOD_ORDER", "PAPER_RC", "SINGLE_COLUMN_IN",
    "beam_axis", "beam_rows", "beam_size", "errorbar", "is_true", "method_color", "method_label", "method_order",
    "method_sort_key", "missing_columns", "n_uncertified", "new_figure", "numeric", "one_dataset_per_model", "paper",
    "rows", "save", "single_setting",
]

SINGLE_COLUMN_IN = 3.3
DOUBLE_COLUMN_IN = 6.8
BEAM_K_MAX = 128
"""The widest beam on the colour scale; wider beams take its (darkest) shade."""

GREEDY_K = 0.88
"""Where greedy search (beam k = 1) is drawn on a beam-size axis: just left of 1, so it does not hide beam k=1."""

METHOD_ORDER = ("greedy", "beam", "beam_nonempty", "beam_min_len", "beam_truncated", "beam_filtered",
                "conditional_beam", "exact", "exact_nonempty", "exact_conditional", "length_conditional", "sample")
"""Method families in legend order; beams sort by k within their family."""

FAMILY_COLORS = {
    "greedy": "#000000", "conditional_beam": "#009E73", "exact": "#D55E00", "exact_nonempty": "#E69F00",
    "length_conditional": "#CC79A7", "sample": "#999999",
    "beam_nonempty": "#56B4E9", "beam_min_len": "#CC79A7", "beam_truncated": "#F0E442", "beam_filtered": "#E69F00",
    "exact_conditional": "#000000",
}
_OTHER_COLOR = "#56B4E9"
_FAMILY_RE = re.compile(r"^(beam|beam_nonempty|beam_min_len|beam_truncated|beam_filtered|conditional_beam)(\d+)?$")

PAPER_RC = {
    "font.family": "sans-serif", "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
    "font.size": 8, "axes.labelsize": 8, "axes.titlesize": 9, "xtick.labelsize": 7, "ytick.labelsize": 7,
    "legend.fontsize": 7, "legend.frameon": False, "axes.spines.top": False, "axes.spines.right": False,
    "axes.linewidth": 0.6, "xtick.major.width": 0.6, "ytick.major.width": 0.6, "lines.linewidth": 1.2,
    "lines.markersize": 4, "errorbar.capsize": 2, "savefig.dpi": 300, "savefig.bbox": "tight",
    "savefig.pad_inches": 0.02,
    # TrueType (Type 42) fonts: editable text in the PDF, and no Type 3 fonts that publishers reject
    "pdf.fonttype": 42, "ps.fonttype": 42,
}


@contextmanager
def paper() -> Iterator[None]:
    """Apply ``PAPER_RC`` for the figures created and saved inside the block."""
    with mpl.rc_context(PAPER_RC):
        yield


def new_figure(ncols: int = 1, *, width: str = "single", height: float = 2.2) -> tuple[Figure, list[Axes]]:
    """A figure of ``width`` "single" (3.3 in) or "double" (6.8 in) column, ``height`` inches, ``ncols`` panels.
    Call inside ``paper()``. Built without pyplot, so no global figure registry keeps it alive."""
    widths = {"single": SINGLE_COLUMN_IN, "double": DOUBLE_COLUMN_IN}
    if width not in widths:
        raise ValueError(f"width must be one of {sorted(widths)}, got {width!r}")
    fig = Figure(figsize=(widths[width], height), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def save(fig: Figure, path_stem: Path | str) -> list[Path]:
    """Write ``fig`` as ``<path_stem>.pdf`` and ``<path_stem>.png`` (300 dpi); returns both paths."""
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    # with_name, not with_suffix: a stem such as "beam_curse.v2" keeps its dot
    paths = [stem.with_name(f"{stem.name}.{ext}") for ext in ("pdf", "png")]
    with paper():
        for path in paths:
            fig.savefig(path, dpi=300)
    return paths


def beam_size(method: str) -> int | None:
    """k of a method named "beam<k>" (None for any other method)."""
    m = _FAMILY_RE.match(method)
    return int(m.group(2)) if m and m.group(1) == "beam" and m.group(2) else None


def _family(method: str) -> tuple[str, int | None]:
    m = _FAMILY_RE.match(method)
    if m:
        return m.group(1), int(m.group(2)) if m.group(2) else None
    return method, None


def method_color(method: str) -> str:
    """The colour of ``method``: its family's, or for "beam<k>" a blue whose depth grows with log k."""
    family, k = _family(method)
    if family == "beam":
        depth = math.log(min(k or 1, BEAM_K_MAX)) / math.log(BEAM_K_MAX)
        return mpl.colors.to_hex(mpl.colormaps["Blues"](0.4 + 0.55 * depth))
    return FAMILY_COLORS.get(family, _OTHER_COLOR)


def method_label(method: str) -> str:
    """Legend text: "beam5" -> "beam k=5", "beam_nonempty5" -> "beam (non-empty) k=5", "exact_nonempty" -> "exact
    non-empty"."""
    family, k = _family(method)
    names = {"exact_nonempty": "exact non-empty", "length_conditional": "length-conditional",
             "conditional_beam": "conditional beam", "beam_nonempty": "beam (non-empty)",
             "beam_min_len": "beam (min. length)", "beam_truncated": "beam (truncated)",
             "beam_filtered": "beam (filtered by A)", "exact_conditional": "exact conditional"}
    name = names.get(family, family)
    return f"{name} k={k}" if k is not None else name


def method_sort_key(method: str) -> tuple[int, int, str]:
    family, k = _family(method)
    order = METHOD_ORDER.index(family) if family in METHOD_ORDER else len(METHOD_ORDER)
    return order, k or 0, method


def method_order(methods: Iterable[str]) -> list[str]:
    """Distinct methods in paper order: greedy, beams by k, conditional beams, exact, ..., then others by name."""
    return sorted(set(methods), key=method_sort_key)


def beam_axis(ax: Axes, sizes: Sequence[int]) -> None:
    """Log-scaled x axis labelled "beam size k" with a plain tick at each beam size in ``sizes``."""
    ax.set_xscale("log")
    ticks = sorted(set(int(k) for k in sizes))
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_locator(NullLocator())
    if ticks:
        # a margin of a fixed factor on the log scale, so a single beam size still gets a visible axis
        ax.set_xlim(ticks[0] / 1.4, ticks[-1] * 1.4)
    ax.set_xlabel("beam size k")


def errorbar(ax: Axes, x: ArrayLike, y: ArrayLike, lo: ArrayLike, hi: ArrayLike, **kwargs: Any) -> None:
    """``ax.errorbar`` from interval bounds ``[lo, hi]`` around ``y`` rather than distances from it."""
    y, lo, hi = (np.asarray(v, dtype=float) for v in (y, lo, hi))
    # clipped at 0: a Wilson bound at a rate of 0 or 1 can miss it by float rounding, which errorbar rejects
    ax.errorbar(x, y, yerr=np.clip(np.vstack([y - lo, hi - y]), 0, None), **kwargs)


def missing_columns(df: pd.DataFrame, columns: Iterable[str]) -> str | None:
    """Why ``df`` cannot be plotted for lack of ``columns``, or None when it has them all."""
    absent = [c for c in columns if c not in df.columns]
    return f"the table lacks the column(s) {absent}" if absent else None


def single_setting(df: pd.DataFrame) -> str | None:
    """Why ``df`` mixes settings a figure must not pool (several (model, dataset) pairs), or None.

    A figure resamples and bins by ``example_id``; ids of two datasets, or one source under two models, would be
    pooled as if they were one observation."""
    if missing_columns(df, ("model", "dataset")) is None:
        pairs = df[["model", "dataset"]].drop_duplicates()
        if len(pairs) > 1:
            listed = ", ".join(f"{m}/{d}" for m, d in pairs.itertuples(index=False))
            return f"the table holds {len(pairs)} (model, dataset) pairs ({listed}); plot one at a time"
    return None


def one_dataset_per_model(df: pd.DataFrame) -> str | None:
    """Why ``df`` cannot be drawn one model at a time (a model ran on several datasets), or None. For figures with
    a panel per model, which would otherwise pool two datasets' sources under one model."""
    per_model = df.groupby("model")["dataset"].nunique()
    pooled = sorted(per_model[per_model > 1].index)
    return f"model(s) {pooled} ran on several datasets; plot one dataset at a time" if pooled else None


def is_true(values: pd.Series) -> pd.Series:
    """``values == True`` with missing values (``pd.NA``, None) as False, for nullable ``boolean`` columns."""
    return values.astype("boolean").fillna(False).astype(bool)


def n_uncertified(df: pd.DataFrame, method: str = "exact") -> int:
    """How many rank-0 rows of ``method`` are not certified (search stopped by its budget before proving the mode)."""
    return int((~is_true(rows(df, method=method)["certified"])).sum())


def rows(df: pd.DataFrame, *, method: str | None = None, rank: int | None = 0) -> pd.DataFrame:
    """The rows of ``method`` (all methods when None) with ``rank`` (all ranks when None); nullable columns
    (``rank`` is ``Int64`` in a consolidated table) compare as False where missing."""
    keep = pd.Series(True, index=df.index)
    if method is not None:
        keep &= is_true(df["method"] == method)
    if rank is not None:
        keep &= is_true(df["rank"] == rank)
    return df[keep]


def beam_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rank-0 rows of the methods named "beam<k>", with ``beam_size`` (int) set to that k."""
    beams = rows(df)
    k = beams["method"].map(lambda m: beam_size(str(m)))
    return beams[k.notna()].assign(beam_size=k[k.notna()].astype(int))


def numeric(values: pd.Series) -> np.ndarray:
    """``values`` as float64 with NaN for missing entries (``pd.NA``, None)."""
    return pd.to_numeric(values, errors="coerce").astype("float64").to_numpy(na_value=np.nan)
