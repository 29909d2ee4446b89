"""Length-conditional modes: the exact mode of p(y | x, |y| = L) for every L in a set, in one tree search.

A prefix of ``d`` tokens is expanded only while it could beat the incumbent of some requested length
``L >= d`` (Yoshida 2024, ch. 4); incumbents are seeded with a beam search constrained to each length.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import replace

from decoding.beam import beam_search
from decoding.best_first import best_first
from decoding.constraints import Constraint, MaxLength
from decoding.protocol import Counted, LanguageModel
from decoding.types import Hypothesis, SearchResult, SearchStats
from decoding.validate import search_inputs


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


def length_conditional_modes(lm: LanguageModel, source_ids: Sequence[int], *, lengths: Collection[int],
                             constraints: Sequence[Constraint] = (), max_nodes: int | None = None,
                             max_seconds: float | None = None, max_memory_mb: float | None = None,
                             batch_size: int = 16, seed_beam_size: int = 4) -> dict[int, SearchResult]:
    """``{L: result}`` for every L in ``lengths`` (non-negative ints): each result's ``best`` is the most probable
    finished output of exactly L tokens (EOS excluded; empty ``hypotheses`` if none satisfies the constraints). All
    results share one search's stats; each is ``certified`` iff no unexpanded prefix of depth <= L could still beat
    it when the search stopped."""
    source = search_inputs(lm, source_ids, lengths=lengths, constraints=constraints, max_nodes=max_nodes,
                           max_seconds=max_seconds, max_memory_mb=max_memory_mb, batch_size=batch_size,
                           seed_beam_size=seed_beam_size)
    wanted = sorted({int(n) for n in lengths})
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
                          max_nodes=max_nodes, max_seconds=max_seconds, max_memory_mb=max_memory_mb)
    model.finish()
    results = {}
    for n in wanted:
        found = policy.bound(n)
        open_lps = [lp for depth, lp in (frontier.pending if frontier else []) if depth <= n and lp > found]
        best = policy.best.get(n)
        n_stats = replace(stats, upper_bound=max([found, *open_lps]), extra=dict(stats.extra))
        results[n] = SearchResult([best] if best is not None else [], not open_lps, n_stats)
    return results
