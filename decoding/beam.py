"""Beam search with finished hypotheses set aside, as in fairseq: at every step the best ``2k`` extensions of
the ``k`` live prefixes are ranked; EOS extensions are finished, the others fill the next beam up to ``k``; the
search stops once ``k`` hypotheses have finished (or at ``max_len``, where only EOS may follow).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from decoding.constraints import Constraint, accepted, length_constraints, restricted
from decoding.protocol import Counted, LanguageModel, as_ids, check_lengths
from decoding.scorers import Scorer
from decoding.types import Hypothesis, SearchInputError, SearchResult, SearchStats


@dataclass
class Beam:
    """The live prefixes of a beam search with their per-token and total model log-probabilities (float64)."""

    prefixes: list[tuple[int, ...]] = field(default_factory=lambda: [()])
    token_lps: list[tuple[float, ...]] = field(default_factory=lambda: [()])
    logprob: Tensor = field(default_factory=lambda: torch.zeros(1, dtype=torch.float64))

    def advance(self, cand: Tensor, lp: Tensor, beam_size: int, eos: int,
                ends: Callable[[tuple[int, ...]], bool]) -> tuple[list[Hypothesis], Tensor, Tensor, Tensor]:
        """Rank the best ``2k`` of the (n * V,) candidate scores ``cand`` (``lp``: the (n, V) model log-probs):
        EOS extensions whose prefix ``ends`` accepts finish (their ``score`` is the candidate's), the others fill
        the next beam up to ``k``, which this beam becomes. Returns the finished hypotheses and the kept
        extensions' rows, tokens and flat candidate indices (empty when none is kept; the beam is then unchanged)."""
        top = torch.topk(cand, min(2 * beam_size, cand.numel()))
        finished: list[Hypothesis] = []
        rows: list[int] = []
        tokens: list[int] = []
        keep: list[int] = []
        for value, flat in zip(top.values.tolist(), top.indices.tolist(), strict=True):
            if value == float("-inf") or len(rows) == beam_size:
                break
            row, token = divmod(flat, lp.shape[1])
            if token == eos:
                if ends(self.prefixes[row]):
                    lps = self.token_lps[row] + (float(lp[row, token]),)
                    finished.append(Hypothesis(self.prefixes[row] + (eos,), float(self.logprob[row] + lp[row, token]),
                                               value, lps, True))
            else:
                rows.append(row)
                tokens.append(token)
                keep.append(flat)
        idx, tok = torch.tensor(rows, dtype=torch.long), torch.tensor(tokens, dtype=torch.long)
        if rows:
            self.prefixes = [self.prefixes[r] + (t,) for r, t in zip(rows, tokens, strict=True)]
            self.token_lps = [self.token_lps[r] + (float(lp[r, t]),) for r, t in zip(rows, tokens, strict=True)]
            self.logprob = self.logprob[idx] + lp[idx, tok]
        return finished, idx, tok, torch.tensor(keep, dtype=torch.long)


def beam_search(lm: LanguageModel, source_ids: Sequence[int], *, beam_size: int, max_len: int, min_len: int = 0,
                scorers: Sequence[Scorer] = (), constraints: Sequence[Constraint] = ()) -> SearchResult:
    """The finished beam, best ``score`` first (``score`` = logprob + scorer terms)."""
    check_lengths(max_len, min_len)
    if beam_size < 1:
        raise SearchInputError(f"beam_size must be >= 1, got {beam_size}")
    source = as_ids(source_ids)
    rules = length_constraints(min_len, max_len, constraints)
    model = Counted(lm, SearchStats())
    eos = lm.eos_id
    state = model.start(source)
    beam = Beam()
    score = torch.zeros(1, dtype=torch.float64)
    finished: list[Hypothesis] = []
    while beam.prefixes and len(finished) < beam_size:
        lp = model.logprobs(state).double()  # (n, V)
        step = lp + sum((s(beam.prefixes, lp, eos) for s in scorers), torch.zeros_like(lp))
        cand = restricted(rules, beam.prefixes, source, score[:, None] + step, eos).view(-1)
        done, idx, tok, keep = beam.advance(cand, lp, beam_size, eos, lambda p: accepted(rules, p, source, eos))
        finished += done
        if not len(idx):
            break
        score = cand[keep]
        state = model.extend(model.select(state, idx), tok)
    finished.sort(key=lambda h: -h.score)
    return SearchResult(finished[:beam_size], False, model.finish())
