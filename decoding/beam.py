"""Beam search with finished hypotheses set aside, as in fairseq: at every step the best ``2k`` extensions of
the ``k`` live prefixes are ranked; EOS extensions are finished, the others fill the next beam up to ``k``; the
search stops once ``k`` hypotheses have finished (or at ``max_len``, where only EOS may follow).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from decoding.constraints import Constraint, accepted, length_constraints, restricted
from decoding.protocol import Counted, LanguageModel
from decoding.scorers import Scorer
from decoding.types import Hypothesis, SearchResult, SearchStats
from decoding.validate import search_inputs


class Beam:
    """The live prefixes of a beam search with their per-token and total model log-probabilities and their scores
    (logprob + scorer terms; a conditional search's classifier term is not part of it), totals as (n,) float64
    tensors on the device of the model's log-probs."""

    def __init__(self, device: torch.device):
        """The beam of the empty prefix (log-probability and score 0) on ``device``."""
        self.prefixes: list[tuple[int, ...]] = [()]
        self.token_lps: list[tuple[float, ...]] = [()]
        self.logprob = torch.zeros(1, dtype=torch.float64, device=device)
        self.score = torch.zeros(1, dtype=torch.float64, device=device)

    def advance(self, cand: Tensor, lp: Tensor, step: Tensor, beam_size: int, eos: int,
                ends: Callable[[tuple[int, ...]], bool]) -> tuple[list[Hypothesis], Tensor, Tensor]:
        """Rank the best ``2k`` of the (n * V,) candidate values ``cand`` (-inf: not allowed); ``lp`` and ``step``
        are the (n, V) model log-probs and score increments (log-prob + scorer terms) of the extensions. EOS
        extensions whose prefix ``ends`` accepts finish, the others fill the next beam up to ``k``, which this beam
        becomes. Returns the finished hypotheses and the kept extensions' rows and tokens, to select and extend the
        model state with (empty when none is kept; the beam is then unchanged)."""
        top = torch.topk(cand, min(2 * beam_size, cand.numel()))
        finished: list[Hypothesis] = []
        rows: list[int] = []
        tokens: list[int] = []
        for value, flat in zip(top.values.tolist(), top.indices.tolist(), strict=True):
            if value == float("-inf") or len(rows) == beam_size:
                break
            row, token = divmod(flat, lp.shape[1])
            if token == eos:
                if ends(self.prefixes[row]):
                    lps = self.token_lps[row] + (float(lp[row, token]),)
                    finished.append(Hypothesis(self.prefixes[row] + (eos,), float(self.logprob[row] + lp[row, token]),
                                               float(self.score[row] + step[row, token]), lps, True))
            else:
                rows.append(row)
                tokens.append(token)
        idx = torch.tensor(rows, dtype=torch.long, device=cand.device)
        tok = torch.tensor(tokens, dtype=torch.long, device=cand.device)
        if rows:
            self.prefixes = [self.prefixes[r] + (t,) for r, t in zip(rows, tokens, strict=True)]
            self.token_lps = [self.token_lps[r] + (float(lp[r, t]),) for r, t in zip(rows, tokens, strict=True)]
            self.logprob = self.logprob[idx] + lp[idx, tok]
            self.score = self.score[idx] + step[idx, tok]
        return finished, idx, tok


def beam_search(lm: LanguageModel, source_ids: Sequence[int], *, beam_size: int, max_len: int, min_len: int = 0,
                scorers: Sequence[Scorer] = (), constraints: Sequence[Constraint] = ()) -> SearchResult:
    """The finished beam, best ``score`` first (``score`` = logprob + scorer terms)."""
    source = search_inputs(lm, source_ids, beam_size=beam_size, max_len=max_len, min_len=min_len, scorers=scorers,
                           constraints=constraints)
    rules = length_constraints(min_len, max_len, constraints)
    model = Counted(lm, SearchStats())
    eos = lm.eos_id
    state = model.start(source)
    beam = Beam(model.logprobs(state).device)
    finished: list[Hypothesis] = []
    while beam.prefixes and len(finished) < beam_size:
        lp = model.logprobs(state).double()  # (n, V)
        step = lp + sum((s(beam.prefixes, lp, eos) for s in scorers), torch.zeros_like(lp))
        cand = restricted(rules, beam.prefixes, source, beam.score[:, None] + step, eos).view(-1)
        done, rows, tokens = beam.advance(cand, lp, step, beam_size, eos, lambda p: accepted(rules, p, source, eos))
        finished += done
        if not len(rows):
            break
        state = model.extend(model.select(state, rows), tokens)
    finished.sort(key=lambda h: -h.score)
    return SearchResult(finished[:beam_size], False, model.finish())
