"""Exact MAP search with a certificate: argmax_y log p(y | x) over finished outputs satisfying constraints.

Branch and bound (best-first, batched; see ``decoding.best_first``) seeded with a beam search's best
hypothesis as the incumbent, as in Stahlberg & Byrne (2019) and Yoshida (2024, ch. 3).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from decoding.beam import beam_search
from decoding.best_first import best_first
from decoding.constraints import Constraint, length_constraints
from decoding.protocol import Counted, LanguageModel
from decoding.types import Hypothesis, SearchResult, SearchStats
from decoding.validate import search_inputs


class _Mode:
    def __init__(self, floor: float):
        self.best: Hypothesis | None = None
        self._floor = floor

    def floor(self, depth: int) -> float:
        return self._floor

    def hopeless(self, logprob: float) -> bool:
        return logprob <= self._floor

    def offer(self, hyp: Hypothesis) -> None:
        if hyp.logprob > self._floor:
            self.best, self._floor = hyp, hyp.logprob


def exact_search(lm: LanguageModel, source_ids: Sequence[int], *, max_len: int, min_len: int = 0,
                 constraints: Sequence[Constraint] = (), lower_bound: float | None = None,
                 max_nodes: int | None = None, max_seconds: float | None = None,
                 max_memory_mb: float | None = None, batch_size: int = 16, seed_beam_size: int = 4) -> SearchResult:
    """The mode of p(y | x) over finished y with ``min_len <= len(y) <= max_len`` (EOS excluded) satisfying
    every constraint.

    ``lower_bound`` (a log-probability, <= 0) replaces the beam seed: only outputs with log-probability >= it are
    searched for, and an empty result then certifies that none exists. ``certified`` is True iff no budget
    (``max_nodes`` expanded prefixes, ``max_seconds`` wall time, beam seed included, ``max_memory_mb`` of search
    tree: ``stats.extra["tree_mb"]``, see ``decoding.best_first``) was hit; otherwise the best output found is
    returned and ``stats.upper_bound`` bounds the true mode's log-probability from above.

    The certificate is exact for the log-probabilities the model computes. In float32, a batched (padded)
    forward and a single-row one differ by ~1e-6 per token, so outputs within ~1e-5 of the mode are numerically
    tied with it.
    """
    source = search_inputs(lm, source_ids, max_len=max_len, min_len=min_len, constraints=constraints,
                           lower_bound=lower_bound, max_nodes=max_nodes, max_seconds=max_seconds,
                           max_memory_mb=max_memory_mb, batch_size=batch_size, seed_beam_size=seed_beam_size)
    rules = length_constraints(min_len, max_len, constraints)
    stats = SearchStats()
    model = Counted(lm, stats)
    policy = _Mode(math.nextafter(lower_bound, -math.inf) if lower_bound is not None else -math.inf)
    if lower_bound is None and seed_beam_size > 0:
        seed = beam_search(lm, source, beam_size=seed_beam_size, max_len=max_len, min_len=min_len,
                           constraints=constraints)
        stats.absorb(seed.stats)
        stats.extra["seed_logprob"] = seed.best.logprob if seed.best is not None else -math.inf
        for hyp in seed.hypotheses:
            policy.offer(hyp)
    frontier = best_first(model, source, rules, policy, batch_size=batch_size, max_nodes=max_nodes,
                          max_seconds=max_seconds, max_memory_mb=max_memory_mb)
    best = policy.best
    found = best.logprob if best is not None else -math.inf
    stats.upper_bound = max([found] + [lp for _, lp in frontier.pending]) if frontier else found
    return SearchResult([best] if best is not None else [], frontier is None, model.finish())
