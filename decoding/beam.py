"""Beam search with finished hypotheses set aside, as in fairseq: at every step the best ``2k`` extensions of
the ``k`` live prefixes are ranked; EOS extensions are finished, the others fill the next beam up to ``k``; the
search stops once ``k`` hypotheses have finished (or at ``max_len``, where only EOS may follow).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from decoding.constraints import Constraint, accepted, length_constraints, restricted
from decoding.protocol import Counted, LanguageModel, as_ids, check_lengths
from decoding.scorers import Scorer
from decoding.types import Hypothesis, SearchInputError, SearchResult, SearchStats


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
    prefixes: list[tuple[int, ...]] = [()]
    token_lps: list[tuple[float, ...]] = [()]
    logprob = torch.zeros(1, dtype=torch.float64)
    score = torch.zeros(1, dtype=torch.float64)
    finished: list[Hypothesis] = []
    while prefixes and len(finished) < beam_size:
        lp = model.logprobs(state).double()  # (n, V)
        step = lp + sum((s(prefixes, lp, eos) for s in scorers), torch.zeros_like(lp))
        cand = restricted(rules, prefixes, source, score[:, None] + step, eos).view(-1)
        top = torch.topk(cand, min(2 * beam_size, cand.numel()))
        rows: list[int] = []
        tokens: list[int] = []
        keep: list[int] = []
        for value, flat in zip(top.values.tolist(), top.indices.tolist(), strict=True):
            if value == float("-inf") or len(rows) == beam_size:
                break
            row, token = divmod(flat, lp.shape[1])
            if token == eos:
                if accepted(rules, prefixes[row], source, eos):
                    lps = token_lps[row] + (float(lp[row, token]),)
                    finished.append(Hypothesis(prefixes[row] + (eos,), float(logprob[row] + lp[row, token]),
                                               value, lps, True))
            else:
                rows.append(row)
                tokens.append(token)
                keep.append(flat)
        if not rows:
            break
        idx = torch.tensor(rows)
        tok = torch.tensor(tokens)
        prefixes = [prefixes[r] + (t,) for r, t in zip(rows, tokens, strict=True)]
        token_lps = [token_lps[r] + (float(lp[r, t]),) for r, t in zip(rows, tokens, strict=True)]
        logprob = logprob[idx] + lp[idx, tok]
        score = cand[torch.tensor(keep)]
        state = model.extend(model.select(state, idx), tok)
    finished.sort(key=lambda h: -h.score)
    return SearchResult(finished[:beam_size], False, model.finish())
