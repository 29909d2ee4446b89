"""Render every paper figure that a result table supports (``lq figures RUN_DIR``, DESIGN.md §7).

A figure whose rows or columns the table lacks (a run without samples, without exact search, without references)
is skipped with the reason logged, so one renderer serves every experiment.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import ModuleType

import pandas as pd

from figures import (
    beam_curse,
    conditional,
    conditional_winrate,
    contamination,
    contamination_length,
    empty_vs_length,
    length_conditional,
    likelihood_quality,
    search_errors,
    style,
)

__all__ = ["FIGURES", "render"]

log = logging.getLogger(__name__)

FIGURES: dict[str, ModuleType] = {
    "beam_curse": beam_curse,
    "search_errors": search_errors,
    "likelihood_quality": likelihood_quality,
    "empty_vs_length": empty_vs_length,
    "length_conditional": length_conditional,
    "contamination": contamination,
    "contamination_length": contamination_length,
    "conditional": conditional,
    "conditional_winrate": conditional_winrate,
}
"""name -> module with ``REQUIRES`` (``figures.style.Requires``: what a table must hold) and ``draw(df) -> Figure``."""


def render(df: pd.DataFrame, out_dir: Path | str) -> list[Path]:
    """Write ``<out_dir>/<name>.pdf`` and ``.png`` for every figure ``df`` supports; returns the paths written."""
    paths: list[Path] = []
    for name, module in FIGURES.items():
        reason = module.REQUIRES.missing(df)
        if reason:
            log.info("skipping figure %s: %s", name, reason)
            continue
        paths += style.save(module.draw(df), Path(out_dir) / name)
        log.info("wrote figure %s", name)
    return paths
