"""Ancestral sampling with temperature, top-k and nucleus (top-p) truncation, all rows in one batch."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from decoding.protocol import Counted, LanguageModel
from decoding.types import Hypothesis, SearchResult, SearchStats
from decoding.validate import search_inputs


def sample(lm: LanguageModel, source_ids: Sequence[int], *, n: int, max_len: int, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None, seed: int = 0) -> SearchResult:
    """``n`` samples in draw order. ``logprob`` is under the model itself (not the tempered/truncated sampling
    distribution). A sample that has not produced EOS after ``max_len`` tokens is returned unfinished. Draws come
    from a CPU generator seeded with ``seed``, so the samples do not depend on the model's device."""
    source = search_inputs(lm, source_ids, n=n, max_len=max_len, temperature=temperature, top_k=top_k, top_p=top_p,
                           seed=seed)
    gen = torch.Generator().manual_seed(seed)
    model = Counted(lm, SearchStats())
    eos = lm.eos_id
    root = model.start(source)
    state = model.select(root, torch.zeros(n, dtype=torch.long, device=model.logprobs(root).device))
    tokens: list[list[int]] = [[] for _ in range(n)]
    token_lps: list[list[float]] = [[] for _ in range(n)]
    live = list(range(n))
    for _ in range(max_len + 1):
        lp = model.logprobs(state).double()  # (live, V)
        probs = _truncate(lp / temperature, top_k, top_p).softmax(-1)
        draw = torch.multinomial(probs.cpu(), 1, generator=gen)[:, 0].to(lp.device)
        keep = []
        for row, (i, t) in enumerate(zip(live, draw.tolist(), strict=True)):
            tokens[i].append(t)
            token_lps[i].append(float(lp[row, t]))
            if t != eos and len(tokens[i]) < max_len + 1:
                keep.append(row)
        if len(keep) == 0:
            break
        rows = torch.tensor(keep, device=lp.device)
        live = [live[r] for r in keep]
        state = model.extend(model.select(state, rows), draw[rows])
    hyps = []
    for toks, lps in zip(tokens, token_lps, strict=True):
        finished = toks[-1] == eos
        if not finished and len(toks) > max_len:
            toks, lps = toks[:max_len], lps[:max_len]
        hyps.append(Hypothesis(tuple(toks), sum(lps), sum(lps), tuple(lps), finished))
    return SearchResult(hyps, False, model.finish())


def _truncate(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) >= top_p  # keep the smallest prefix with mass >= top_p
        logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return logits
