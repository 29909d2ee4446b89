"""Methods are data (DESIGN.md §5): a method is a ``family`` from ``FAMILIES`` plus typed settings columns.

A row of the result table names its family in ``family`` and its settings in the columns of ``SETTINGS``
(``beam_size``, ``budget_s``, ...). The ``method`` column is a display key derived from them by ``label``
(``beam5``: the family, followed by the beam size for the families that run at one); nothing reads settings back
out of it. Tables, figures and the paper order methods with ``order`` and name them with ``display``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

__all__ = ["FAMILIES", "SETTINGS", "Family", "display", "families", "family", "keys", "label", "order", "sort_key"]


@dataclass(frozen=True)
class Family:
    """A kind of search. ``certifies``: its result says whether it is the proven optimum (exact search under a
    budget); ``ranked``: rank 0 is the method's best output (not so for samples, or for the mode of one length of a
    length-conditional search); ``sized``: it runs at a beam size, which ``label`` appends; ``refines``: it runs a
    number of refinement steps (``refine_steps``), which ``label`` appends too."""

    name: str
    label: str
    certifies: bool = False
    ranked: bool = True
    sized: bool = False
    refines: bool = False  # it runs a number of refinement steps, ``refine_steps``, which ``label`` appends


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("greedy", "greedy"),
    Family("beam", "beam", sized=True),
    Family("beam_nonempty", "beam (non-empty)", sized=True),
    Family("beam_min_len", "beam (min. length)", sized=True),
    Family("beam_truncated", "beam (truncated)", sized=True),
    Family("beam_filtered", "beam (filtered by A)", sized=True),
    Family("conditional_beam", "conditional beam", sized=True),
    Family("exact", "exact", certifies=True),
    Family("exact_nonempty", "exact non-empty", certifies=True),
    Family("exact_nondegenerate", "exact non-degenerate", certifies=True),
    Family("exact_conditional", "exact conditional", certifies=True),
    Family("length_conditional", "length-conditional", certifies=True, ranked=False),
    Family("sample", "sample", ranked=False),
    Family("refine", "iterative refinement", refines=True),
    Family("copy", "copy of the source"),
)}
"""Every family, in the order tables and legends list them."""

SETTINGS: dict[str, tuple[str, str]] = {
    "beam_size": ("Int64", "beam width k"),
    "budget_s": ("Float64", "an exact search's time budget (seconds)"),
    "max_nodes": ("Int64", "an exact search's node budget (missing: none)"),
    "max_memory_mb": ("Float64", "an exact search's budget of search-tree memory, MB (missing: none)"),
    "constraints": ("string", "constraints the output must meet, e.g. MinLength(1)"),
    "candidates": ("Int64", "conditional beam search: next tokens per beam the classifier scores (missing: all)"),
    "length_offsets": ("string", "length-conditional search: the lengths searched, as offsets from the reference's"),
    "n_samples": ("Int64", "samples drawn"),
    "temperature": ("Float64", "sampling temperature"),
    "seed": ("Int64", "sampling seed"),
    "refine_steps": ("Int64", "iterative refinement (a non-autoregressive model): at most this many steps"),
    "length_candidates": ("Int64", "iterative refinement: the most probable target lengths tried"),
}
"""Setting column -> (pandas dtype, meaning). A method's settings are recorded as these columns in every row."""


def family(name: str) -> Family:
    """The family called ``name``; a ``ValueError`` naming the known ones otherwise."""
    if name not in FAMILIES:
        raise ValueError(f"unknown method family {name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def label(family_name: str, settings: Mapping[str, Any]) -> str:
    """The ``method`` key of a family with its settings: ``beam5`` for a sized family at k = 5, ``refine_T8`` for
    refinement of at most 8 steps, else the family."""
    if family(family_name).sized:
        return f"{family_name}{int(settings['beam_size'])}"
    if family(family_name).refines:
        return f"{family_name}_T{int(settings['refine_steps'])}"
    return family_name


def display(family_name: str, beam_size: Any = None) -> str:
    """Legend text: ``beam k=5``, ``beam (non-empty) k=5``, ``exact non-empty``; an unknown family is its name."""
    known = FAMILIES.get(family_name)
    name = known.label if known else family_name
    return f"{name} k={int(beam_size)}" if known and known.sized and pd.notna(beam_size) else name


def families(*, sized: bool | None = None, ranked: bool | None = None,
             certifies: bool | None = None) -> tuple[str, ...]:
    """The names of the families with the given properties (None: either), in table order."""
    wanted = {"sized": sized, "ranked": ranked, "certifies": certifies}
    return tuple(name for name, f in FAMILIES.items()
                 if all(v is None or getattr(f, k) == v for k, v in wanted.items()))


def _rank(family_name: str) -> int:
    return list(FAMILIES).index(family_name) if family_name in FAMILIES else len(FAMILIES)


def keys(df: pd.DataFrame) -> dict[str, tuple[str, Any]]:
    """``method`` -> (``family``, ``beam_size``) for each method of a result table: what ``display`` and the
    figures' colours take."""
    first = df[["method", "family", "beam_size"]].drop_duplicates("method")
    return {str(m): (str(f), k) for m, f, k in first.itertuples(index=False)}


def order(df: pd.DataFrame) -> list[str]:
    """The distinct ``method`` values of ``df`` in table order: by family (``FAMILIES`` order, unknown families
    last), then beam size, then name."""
    key = [(_rank(f), 0 if pd.isna(k) else int(k), m) for m, (f, k) in keys(df).items()]
    return [m for _, _, m in sorted(key)]


def sort_key(families: Iterable[str]) -> list[int]:
    """Each family's position in ``FAMILIES`` (unknown families after every known one), for sorting a column."""
    return [_rank(str(f)) for f in families]
