"""Result types shared by every search, and the errors searches raise on bad input.

Conventions (DESIGN.md §3), stated once here:
- ``Hypothesis.logprob`` is the sum of natural-log model probabilities of the generated tokens, EOS included,
  source/prompt excluded, never length-normalised. ``score`` is what the search ranked by (equal to
  ``logprob`` unless a search adds terms such as scorers or penalties).
- A hypothesis is ``finished`` iff it ends in EOS; its length excludes EOS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


class SearchInputError(ValueError):
    """A search, model adapter or constraint was given arguments that cannot describe a valid search space (see
    ``decoding.validate``)."""


class NonFiniteLogProbError(FloatingPointError):
    """The model produced NaN or +inf log-probabilities."""


@dataclass(frozen=True)
class Hypothesis:
    token_ids: tuple[int, ...]
    logprob: float
    score: float
    token_logprobs: tuple[float, ...]
    finished: bool

    @property
    def length(self) -> int:
        """Generated tokens, EOS excluded."""
        return len(self.token_ids) - int(self.finished)


@dataclass
class SearchStats:
    """Cost of a search. ``nodes`` counts prefixes whose next-token distribution was computed (one model row
    each); ``forward_calls`` counts batched calls to the LanguageModel (``start`` / ``extend``; an
    encoder-decoder adapter runs one decoder forward per distinct prefix length in a batch);
    ``tokens_scored`` counts rows x vocabulary entries scored. ``budget_hit`` names the budget that stopped
    an exact search, if any."""

    nodes: int = 0
    forward_calls: int = 0
    tokens_scored: int = 0
    wall_s: float = 0.0
    upper_bound: float = math.nan
    budget_hit: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def absorb(self, other: SearchStats) -> None:
        """Add the model cost of a sub-search (e.g. the beam seed of exact search)."""
        self.nodes += other.nodes
        self.forward_calls += other.forward_calls
        self.tokens_scored += other.tokens_scored


@dataclass
class SearchResult:
    """Hypotheses best first. ``certified`` is True only for exact searches that completed within budget: then
    ``best`` is a mode of the search space. For an uncertified exact search ``stats.upper_bound`` bounds the
    log-probability of the true mode from above."""

    hypotheses: list[Hypothesis]
    certified: bool
    stats: SearchStats

    @property
    def best(self) -> Hypothesis | None:
        return self.hypotheses[0] if self.hypotheses else None
