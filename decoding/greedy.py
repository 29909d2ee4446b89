"""Greedy decoding: the argmax token at every step."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from decoding.constraints import MaxLength, MinLength, restricted
from decoding.protocol import Counted, LanguageModel
from decoding.types import Hypothesis, SearchResult, SearchStats
from decoding.validate import search_inputs


def greedy_search(lm: LanguageModel, source_ids: Sequence[int], *, max_len: int, min_len: int = 0) -> SearchResult:
    """Pick the most probable allowed token until EOS. At ``max_len`` tokens only EOS is allowed, so the output
    is always finished (as in fairseq); EOS is disallowed before ``min_len``. Ties go to the lower token id."""
    source = search_inputs(lm, source_ids, max_len=max_len, min_len=min_len)
    model = Counted(lm, SearchStats())
    constraints = [MinLength(min_len), MaxLength(max_len)]
    state = model.start(source)
    tokens: list[int] = []
    token_lps: list[float] = []
    while True:
        lp = model.logprobs(state)[0]
        allowed = restricted(constraints, [tuple(tokens)], source, lp[None], lm.eos_id)[0]
        token = int(torch.argmax(allowed))
        tokens.append(token)
        token_lps.append(float(lp[token]))
        if token == lm.eos_id:
            break
        state = model.extend(state, torch.tensor([token], device=lp.device))
    logprob = sum(token_lps)
    hyp = Hypothesis(tuple(tokens), logprob, logprob, tuple(token_lps), True)
    return SearchResult([hyp], False, model.finish())
