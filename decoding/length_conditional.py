"""Length-conditional modes: the exact mode of p(y | x, |y| = L) for every L in a set, in one tree search.

A prefix of ``d`` tokens is expanded only while it could beat the incumbent of some requested length
``L >= d`` (Yoshida 2024, ch. 4); incumbents are seeded with a beam search constrained to each length.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import replace

from decoding.beam import beam_search
from decoding.best_first import best_first, check_sizes
from decoding.constraints import Constraint, MaxLength
from decoding.protocol import Counted, LanguageModel, as_ids
from decoding.types import Hypothesis, SearchInputError, SearchResult, SearchStats


class _PerLength:
    def __init__(self, lengths: Sequence[int]):
        self.lengths = sorted(lengths)
        self.best: dict[int, Hypothesis] = {}

    def bound(self, length: int) -> float:
        hyp = self.best.get(length)
        return hyp.logprob if hyp is not None else -math.inf

    def floor(self, depth: int) -> float:
        reachable = [self.bound(n) for n in self.lengths if n >= depth]
        return min(reachable) if reachable else math.inf

    def hopeless(self, logprob: float) -> bool:
        return logprob <= min(self.bound(n) for n in self.lengths)

    def offer(self, hyp: Hypothesis) -> None:
        n = hyp.length
        if n in self.lengths and hyp.logprob > self.bound(n):
            self.best[n] = hyp


def length_conditional_modes(lm: LanguageModel, source_ids: Sequence[int], *, lengths: Iterable[int],
                             constraints: Sequence[Constraint] = (), max_nodes: int | None = None,
                             max_seconds: float | None = None, batch_size: int = 16,
                             seed_beam_size: int = 4) -> dict[int, SearchResult]:
    """``{L: result}``: each result's ``best`` is the most probable finished output of exactly L tokens (EOS
    excluded; empty ``hypotheses`` if none satisfies the constraints). All results share one search's stats;
    each is ``certified`` iff no unexpanded prefix of depth <= L could still beat it when the search stopped."""
    wanted = sorted(set(int(n) for n in lengths))
    if not wanted or wanted[0] < 0:
        raise SearchInputError(f"lengths must be a non-empty set of non-negative integers, got {wanted}")
    check_sizes(batch_size, seed_beam_size)
    source = as_ids(source_ids)
    stats = SearchStats()
    policy = _PerLength(wanted)
    model = Counted(lm, stats)
    if seed_beam_size > 0:
        for n in wanted:
            seed = beam_search(lm, source, beam_size=seed_beam_size, max_len=n, min_len=n,
                               constraints=constraints)
            stats.absorb(seed.stats)
            for hyp in seed.hypotheses:
                policy.offer(hyp)
    frontier = best_first(model, source, [MaxLength(wanted[-1]), *constraints], policy, batch_size=batch_size,
                          max_nodes=max_nodes, max_seconds=max_seconds)
    model.finish()
    results = {}
    for n in wanted:
        found = policy.bound(n)
        open_lps = [lp for depth, lp in (frontier.pending if frontier else []) if depth <= n and lp > found]
        best = policy.best.get(n)
        n_stats = replace(stats, upper_bound=max([found, *open_lps]), extra=dict(stats.extra))
        results[n] = SearchResult([best] if best is not None else [], not open_lps, n_stats)
    return results
