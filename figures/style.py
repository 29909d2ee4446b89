"""The shared look of the paper figures (method colours, rc style, sizes, saving) and the one preamble every figure
has: ``Requires``, what a table must hold for the figure to be drawn.

Colours follow the Okabe & Ito (2008) colour-blind-safe palette, one per method family; beam search of width k takes
a shade of a sequential blue palette fixed on a log scale up to ``BEAM_K_MAX``, so beam k has the same colour in
every figure whatever other widths a run holds. The palette has eight colours and the toolkit more families, so
families that never share a run share a colour: the exact conditional mode takes greedy search's, the filtered
beam the exact non-empty mode's and the minimum-length beam the length-conditional modes'. Within one experiment
every family has its own colour.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter
from numpy.typing import ArrayLike

from analysis.frames import is_true, rows

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

__all__ = [
    "BEAM_K_MAX", "DOUBLE_COLUMN_IN", "FAMILY_COLORS", "GREEDY_K", "PAPER_RC", "SINGLE_COLUMN_IN", "Requires",
    "beam_axis", "beam_rows", "errorbar", "method_color", "missing_columns", "n_uncertified", "new_figure", "paper",
    "save",
]

SINGLE_COLUMN_IN = 3.3
DOUBLE_COLUMN_IN = 6.8
BEAM_K_MAX = 128
"""The widest beam on the colour scale; wider beams take its (darkest) shade."""

GREEDY_K = 0.88
"""Where greedy search (beam k = 1) is drawn on a beam-size axis: just left of 1, so it does not hide beam k=1."""

FAMILY_COLORS = {
    "greedy": "#000000", "conditional_beam": "#009E73", "exact": "#D55E00", "exact_nonempty": "#E69F00",
    "length_conditional": "#CC79A7", "sample": "#999999",
    "beam_nonempty": "#56B4E9", "beam_min_len": "#CC79A7", "beam_truncated": "#F0E442", "beam_filtered": "#E69F00",
    "exact_conditional": "#000000",
}
_OTHER_COLOR = "#56B4E9"

PAPER_RC: dict[RcKeyType, Any] = {
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


def method_color(family: str, beam_size: Any = None) -> str:
    """The colour of a method: its family's, or for plain beam search a blue whose depth grows with log k."""
    if family == "beam":
        k = 1 if beam_size is None or pd.isna(beam_size) else int(beam_size)
        depth = math.log(min(k, BEAM_K_MAX)) / math.log(BEAM_K_MAX)
        return mpl.colors.to_hex(mpl.colormaps["Blues"](0.4 + 0.55 * depth))
    return FAMILY_COLORS.get(family, _OTHER_COLOR)


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


_SCOPES: dict[str, Callable[[pd.DataFrame], str | None]] = {
    "setting": single_setting, "per_model": one_dataset_per_model, "any": lambda df: None}


@dataclass(frozen=True)
class Requires:
    """What a figure needs of a table: ``columns``; a ``scope`` ("setting": one (model, dataset) pair, as a figure
    that resamples by ``example_id`` needs; "per_model": one dataset per model, for a panel per model; "any");
    and ``rows``, which says why the table's rows cannot be drawn (None: they can). ``lq figures`` checks it once
    with ``missing`` and then calls the figure's ``draw``; ``plot`` checks and draws."""

    what: str
    columns: tuple[str, ...]
    scope: str = "setting"
    rows: Callable[[pd.DataFrame], str | None] | None = None

    def missing(self, df: pd.DataFrame) -> str | None:
        """Why ``df`` cannot be drawn, or None."""
        reason = missing_columns(df, self.columns) or _SCOPES[self.scope](df)
        if reason is None and self.rows is not None:
            reason = self.rows(df)
        return reason

    def plot(self, draw: Callable[[pd.DataFrame], Figure]) -> Callable[[pd.DataFrame], Figure]:
        """``draw`` preceded by the check: a ``ValueError`` saying why a table cannot be drawn."""
        def plot(df: pd.DataFrame) -> Figure:
            reason = self.missing(df)
            if reason:
                raise ValueError(f"cannot plot {self.what}: {reason}")
            return draw(df)

        plot.__doc__ = draw.__doc__
        return plot


def n_uncertified(df: pd.DataFrame, family: str = "exact") -> int:
    """How many rank-0 rows of ``family`` are not certified (search stopped by its budget before proving the mode)."""
    return int((~is_true(rows(df, family=family)["certified"])).sum())


def beam_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rank-0 rows of plain beam search, with ``beam_size`` as int."""
    beams = rows(df, family="beam")
    return beams.assign(beam_size=beams["beam_size"].astype(int))
