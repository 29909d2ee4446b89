"""The degeneracy of one output: emptiness, length, repetition, copying of the source, and the ``degenerate`` flag.

Pure Python without pandas, so that decoding's ``NotDegenerate`` and the analysis (``analysis.degeneracy``, which
applies these to result tables) share one definition (DESIGN.md §2).

Units are the whitespace-separated words of the detokenised text, so every number is comparable across models
and tokenizers; the repetition functions take any sequence, so they apply to token ids unchanged.

- ``seq_rep_n`` (Welleck et al. 2020, "Neural text generation with unlikelihood training", seq-rep-n): the share
  of the output's n-grams that repeat an earlier one, ``1 - |unique n-grams| / |n-grams|``.
- ``rep_w`` (Welleck et al. 2020, rep/l with l = 16): the share of tokens that already occur among the previous
  ``window`` tokens; the ``rep_consecutive`` column is ``rep_w`` with window 1, the share of tokens that repeat the
  one before (the typical failure of non-autoregressive decoders: "the the land land").
- ``distinct_n`` (Li et al. 2016, "A diversity-promoting objective function for neural conversation models"):
  ``|unique n-grams| / |n-grams|``, here within one output.
- ``longest_repeat``: the length of the longest n-gram that occurs at least twice (occurrences may overlap).
- ``copy_exact`` / ``copy_near``: the output equals the source up to whitespace / has a character-level
  ``difflib.SequenceMatcher`` ratio (2 * matched characters / total characters) of at least
  ``DegeneracyThresholds.copy_near`` with it.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "COLUMNS", "REP_WINDOW", "DegeneracyThresholds", "copy_exact", "copy_near", "degeneracy", "distinct_n",
    "longest_repeat", "rep_w", "seq_rep_n",
]

REP_WINDOW = 16
"""Welleck et al.'s context length l for rep/l."""

COLUMNS: dict[str, str] = {
    "empty": "boolean", "length_ratio_src": "float64", "length_ratio_ref": "float64", "seq_rep_4": "float64",
    "rep_w": "float64", "rep_consecutive": "float64", "distinct_1": "float64", "distinct_2": "float64",
    "longest_repeat": "Int64",
    "copy_exact": "boolean", "copy_near": "boolean", "degenerate": "boolean",
}
"""The metrics ``degeneracy`` returns, with the pandas dtypes of their columns (nullable, for rows without
output)."""


@dataclass(frozen=True)
class DegeneracyThresholds:
    """When an output counts as degenerate: it is empty, or a near copy of the source
    (similarity >= ``copy_near``), or a repetition loop: more than ``seq_rep_4`` of its 4-grams are repeats, or
    some ``longest_repeat``-gram occurs twice. The defaults flag "the sons of the sons of the sons of the sons"
    (seq-rep-4 = 0.625) but leave a sentence that says one short phrase twice alone."""

    seq_rep_4: float = 0.5
    longest_repeat: int = 8
    copy_near: float = 0.8

    def __post_init__(self) -> None:
        if not 0.0 <= self.seq_rep_4 < 1.0:
            raise ValueError(f"seq_rep_4 must be in [0, 1): seq-rep-4 never exceeds 1, got {self.seq_rep_4}")
        if self.longest_repeat < 1:
            raise ValueError(f"longest_repeat must be >= 1 (a length in words), got {self.longest_repeat}")
        if not 0.0 < self.copy_near <= 1.0:
            raise ValueError(f"copy_near must be in (0, 1]: it is a similarity ratio, got {self.copy_near}")


def _ngrams(tokens: Sequence[Hashable], n: int) -> list[tuple[Hashable, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def seq_rep_n(tokens: Sequence[Hashable], n: int = 4) -> float:
    """``1 - |unique n-grams| / |n-grams|``; 0 when the output has fewer than ``n`` tokens (nothing repeats)."""
    grams = _ngrams(tokens, n)
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def rep_w(tokens: Sequence[Hashable], window: int = REP_WINDOW) -> float:
    """Share of tokens equal to one of the ``window`` tokens before them; 0 for an empty output."""
    if not tokens:
        return 0.0
    repeats = sum(tokens[t] in tokens[max(0, t - window):t] for t in range(len(tokens)))
    return repeats / len(tokens)


def distinct_n(tokens: Sequence[Hashable], n: int) -> float:
    """``|unique n-grams| / |n-grams|``; NaN when the output has no n-gram (diversity is undefined, not 0)."""
    grams = _ngrams(tokens, n)
    return len(set(grams)) / len(grams) if grams else math.nan


def longest_repeat(tokens: Sequence[Hashable]) -> int:
    """Length of the longest n-gram occurring at least twice, overlaps allowed ("a a a" repeats "a a"); 0 if none.

    A repeated n-gram contains a repeated (n-1)-gram, so the answer is found by bisection over n: O(L^2 log L)
    token comparisons at worst, which keeps long repetition loops (the longest repeat is then ~L) cheap."""
    lo, hi = 0, len(tokens) - 1  # invariant: some lo-gram repeats (trivially for lo = 0), no (hi+1)-gram does
    while lo < hi:
        mid = (lo + hi + 1) // 2
        grams = _ngrams(tokens, mid)
        if len(set(grams)) < len(grams):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _normalise(text: str) -> str:
    return " ".join(text.split())


def copy_exact(text: str, source: str) -> bool:
    """A non-empty output equal to the source after collapsing whitespace (case and punctuation count)."""
    out = _normalise(text)
    return bool(out) and out == _normalise(source)


def copy_near(text: str, source: str, threshold: float = DegeneracyThresholds.copy_near) -> bool:
    """A non-empty output whose ``SequenceMatcher`` ratio with the source (whitespace collapsed) is >= ``threshold``.

    ``autojunk`` is off: its heuristic ignores frequent characters in strings over 200 characters, which would
    make the ratio depend on length. The cheap upper bounds are checked first, so unrelated strings cost O(n)."""
    out = _normalise(text)
    if not out:
        return False
    m = difflib.SequenceMatcher(None, out, _normalise(source), autojunk=False)
    return m.real_quick_ratio() >= threshold and m.quick_ratio() >= threshold and m.ratio() >= threshold


def _length_ratio(n_words: int, other: object) -> float:
    denominator = len(other.split()) if isinstance(other, str) else 0
    return n_words / denominator if denominator else math.nan


def degeneracy(text: str | None, source: str, reference: str | None = None,
               thresholds: DegeneracyThresholds = DegeneracyThresholds()) -> dict[str, Any]:
    """Every metric of ``COLUMNS`` for one output; missing values (None / NaN) when there is no output.

    Length ratios are output words over source or reference words, NaN when that text is missing or empty."""
    if not isinstance(text, str):
        return {name: math.nan if dtype == "float64" else None for name, dtype in COLUMNS.items()}
    words = text.split()
    row: dict[str, Any] = {
        "empty": not words,
        "length_ratio_src": _length_ratio(len(words), source),
        "length_ratio_ref": _length_ratio(len(words), reference),
        "seq_rep_4": seq_rep_n(words, 4),
        "rep_w": rep_w(words),
        "rep_consecutive": rep_w(words, 1),
        "distinct_1": distinct_n(words, 1),
        "distinct_2": distinct_n(words, 2),
        "longest_repeat": longest_repeat(words),
        "copy_exact": copy_exact(text, source),
        "copy_near": copy_near(text, source, thresholds.copy_near),
    }
    row["degenerate"] = (row["empty"] or row["copy_near"] or row["seq_rep_4"] > thresholds.seq_rep_4
                         or row["longest_repeat"] >= thresholds.longest_repeat)
    return row
