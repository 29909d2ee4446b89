"""Likelihood of each output relative to the other outputs for its example and to the certified mode.

Search error in the sense of Stahlberg & Byrne 2019 ("On NMT search errors and model errors: cat got your
tongue?"): a search's best output is less probable than the exact mode. The mode is known only where exact
search certified it, so ``search_error`` is undefined (NaN) elsewhere rather than guessed from the best output
found. It is measured against the mode of the unconstrained search space: for a constrained search
(``exact_nonempty``, a ``min_len``) it says how far the constraint moves the output, not that search failed.

An example is one (``run_id``, ``model``, ``dataset``, ``example_id``); ``model`` and ``dataset`` are part of the
key so a run holding several models or corpora never ranks one model's outputs against another's.
"""

from __future__ import annotations

import pandas as pd

from analysis import methods

__all__ = ["COLUMNS", "MODE_FAMILY", "SEARCH_ERROR_TOL", "add_likelihood"]

COLUMNS: dict[str, str] = {
    "logprob_per_token": "float64", "logprob_rank": "Int64", "mode_logprob": "float64", "search_error": "float64",
}
"""The columns ``add_likelihood`` adds, with their pandas dtypes."""

MODE_FAMILY = "exact"
"""The family whose certified rank-0 output is the mode."""
SEARCH_ERROR_TOL = 1e-4
"""Nats: cached and recomputed log-probabilities of one output differ by float noise, never a search error."""

_KEYS = ["run_id", "model", "dataset", "example_id"]


def _flag(s: pd.Series) -> pd.Series:
    """A plain bool Series from a possibly nullable one; a missing value is False."""
    return s.astype("boolean").fillna(False).astype(bool)


def add_likelihood(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` with the ``COLUMNS`` added or replaced:

    - ``logprob_per_token``: ``logprob`` over the tokens it scores, ``n_tokens + 1`` with EOS for a finished output
      (``n_tokens`` for an unfinished sample, whose log-probability has no EOS term).
    - ``logprob_rank``: 1 for the most probable of the distinct outputs (distinct ``token_ids``) of the example,
      over all methods in the table; rows with the same output share its rank, equally probable outputs share
      the lower rank (1, 1, 3). An output found by several methods is ranked by its highest ``logprob``.
    - ``mode_logprob``: the highest ``logprob`` of a certified rank-0 row of family ``exact``, NaN if none.
    - ``search_error``: for a rank-0 row of a family whose rank 0 is its best output (``ranked`` in
      ``analysis.methods``: not samples, not the mode of one length), 1.0 if its ``logprob`` is below
      ``mode_logprob`` by more than ``SEARCH_ERROR_TOL`` else 0.0; NaN where either is missing.

    Rows without output (``logprob`` missing) get missing values throughout."""
    logprob = df["logprob"].astype("float64")
    scored = df["n_tokens"].astype("float64") + _flag(df["finished"])
    frame = pd.DataFrame({
        "example": df.groupby(_KEYS, dropna=False, sort=False).ngroup().to_numpy(),
        "output": [" ".join(map(str, ids)) if ids is not None else "" for ids in df["token_ids"]],
        "logprob": logprob.to_numpy(),
    })

    outputs = frame.dropna(subset=["logprob"]).groupby(["example", "output"], as_index=False)["logprob"].max()
    outputs["logprob_rank"] = outputs.groupby("example")["logprob"].rank(method="min", ascending=False)
    rank = frame.merge(outputs.drop(columns="logprob"), on=["example", "output"], how="left")["logprob_rank"]
    rank = rank.where(frame["logprob"].notna())

    is_mode = (_flag(df["family"].eq(MODE_FAMILY)) & _flag(df["rank"].eq(0)) & _flag(df["certified"])).to_numpy()
    mode = frame["logprob"].where(is_mode).groupby(frame["example"]).transform("max")
    searched = (_flag(df["rank"].eq(0)) & _flag(df["family"].isin(methods.families(ranked=True)))).to_numpy()
    defined = searched & mode.notna().to_numpy() & frame["logprob"].notna().to_numpy()
    error = (frame["logprob"] < mode - SEARCH_ERROR_TOL).astype("float64").where(defined)

    metrics = pd.DataFrame({
        "logprob_per_token": (logprob / scored.where(scored > 0)).to_numpy(),
        "logprob_rank": rank.to_numpy(),
        "mode_logprob": mode.to_numpy(),
        "search_error": error.to_numpy(),
    }, index=df.index).astype(COLUMNS)
    return df.drop(columns=[c for c in COLUMNS if c in df.columns]).join(metrics)
