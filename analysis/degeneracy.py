"""Degeneracy of generated text as result-table columns: emptiness, length, repetition, copying of the source,
and one ``degenerate`` flag.

The metrics of one output and their definitions are in ``analysis.predicates`` (pure Python, shared with
decoding's ``NotDegenerate``) and are re-exported here. ``add_degeneracy`` adds one column per metric to a result
table (one row per output). A row without output (``text`` None) gets missing values: NaN in float columns,
``pd.NA`` in the nullable ``boolean`` and ``Int64`` columns, so rates such as ``df.degenerate.mean()`` skip it.
"""

from __future__ import annotations

import pandas as pd

from analysis.predicates import (
    COLUMNS,
    REP_WINDOW,
    DegeneracyThresholds,
    copy_exact,
    copy_near,
    degeneracy,
    distinct_n,
    longest_repeat,
    rep_w,
    seq_rep_n,
)

__all__ = [
    "COLUMNS", "REP_WINDOW", "DegeneracyThresholds", "add_degeneracy", "copy_exact", "copy_near", "degeneracy",
    "distinct_n", "longest_repeat", "rep_w", "seq_rep_n",
]


def add_degeneracy(df: pd.DataFrame, thresholds: DegeneracyThresholds = DegeneracyThresholds()) -> pd.DataFrame:
    """A copy of ``df`` (columns ``text``, ``source``, ``reference``) with the ``COLUMNS`` added or replaced."""
    rows = [degeneracy(text, source, reference, thresholds)
            for text, source, reference in zip(df["text"], df["source"], df["reference"], strict=True)]
    metrics = pd.DataFrame(rows, index=df.index, columns=list(COLUMNS)).astype(COLUMNS)
    return df.drop(columns=[c for c in COLUMNS if c in df.columns]).join(metrics)
