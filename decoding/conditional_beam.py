"""Conditional beam search: beam search on p(y | x, A) for an attribute A of complete outputs (DESIGN.md §4).

A prefix is ranked by log p(y<=t | x) + log q(A | x, y<=t), with q a classifier of whether the finished output
will have A. With the exact q this is log p(y<=t, A | x), whose maximum over finished outputs is the conditional
mode; at EOS the classifier term is replaced by the exact indicator log 1[A(y)], so no returned hypothesis lacks
A. As in FUDGE (Yang & Klein 2021), each beam's next tokens are first cut to the ``candidates`` most probable
under the model, and the classifier scores every candidate of every beam in one batched call. The beam itself
is ``beam_search``'s (``decoding.beam.Beam``): the best ``2k`` extensions are ranked, finished ones set aside,
until ``k`` have finished.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from decoding.attributes import Attribute, Classifier, source_content
from decoding.beam import Beam
from decoding.constraints import Constraint, accepted, length_constraints, restricted
from decoding.protocol import Counted, LanguageModel
from decoding.scorers import Scorer
from decoding.types import Hypothesis, SearchResult, SearchStats
from decoding.validate import search_inputs

NEG_INF = float("-inf")


def conditional_beam_search(lm: LanguageModel, source_ids: Sequence[int], *, attribute: Attribute,
                            classifier: Classifier, beam_size: int, max_len: int, min_len: int = 0,
                            candidates: int | None = None, scorers: Sequence[Scorer] = (),
                            constraints: Sequence[Constraint] = ()) -> SearchResult:
    """The finished beam, best ``score`` first. Every hypothesis has the attribute, and its ``score`` is
    logprob + scorer terms (the classifier term of a finished output is log 1 = 0); ``logprob`` is the model's.
    ``stats.extra`` adds ``classifier_calls`` (batched calls) and ``classifier_rows`` (prefixes scored)."""
    source = search_inputs(lm, source_ids, attribute=attribute, classifier=classifier, beam_size=beam_size,
                           max_len=max_len, min_len=min_len, candidates=candidates, scorers=scorers,
                           constraints=constraints)
    content = source_content(source, lm.eos_id)
    rules = length_constraints(min_len, max_len, constraints)
    stats = SearchStats(extra={"classifier_calls": 0, "classifier_rows": 0})
    model = Counted(lm, stats)
    eos = lm.eos_id
    state = model.start(source)
    beam = Beam(model.logprobs(state).device)
    finished: list[Hypothesis] = []
    while beam.prefixes and len(finished) < beam_size:
        prefixes = beam.prefixes
        lp = model.logprobs(state).double()  # (n, V)
        step = lp + sum((s(prefixes, lp, eos) for s in scorers), torch.zeros_like(lp))
        allowed = _top(restricted(rules, prefixes, source, lp, eos), candidates)
        # a fresh copy: the EOS column is overwritten, and classifiers may return cached or inference tensors
        log_q = classifier.log_q(lm, state, source, prefixes).to(lp.device, torch.float64, copy=True)  # (n, V)
        stats.extra["classifier_calls"] += 1
        stats.extra["classifier_rows"] += len(prefixes)
        ends = (allowed[:, eos] > NEG_INF).tolist()  # the attribute may be costly (text metrics): only where needed
        log_q[:, eos] = torch.tensor([0.0 if end and attribute(p, content) and accepted(rules, p, source, eos)
                                      else NEG_INF for p, end in zip(prefixes, ends, strict=True)],
                                     dtype=torch.float64, device=lp.device)
        cand = torch.where(allowed > NEG_INF, beam.score[:, None] + step + log_q, NEG_INF).view(-1)
        # an EOS candidate that lacks A (or breaks a constraint) is already -inf, so every finite one may end
        done, rows, tokens = beam.advance(cand, lp, step, beam_size, eos, lambda p: True)
        finished += done
        if not len(rows):
            break
        state = model.extend(model.select(state, rows), tokens)
    finished.sort(key=lambda h: -h.score)
    return SearchResult(finished[:beam_size], False, model.finish())


def _top(scores: Tensor, k: int | None) -> Tensor:
    """(n, V) ``scores`` with all but each row's ``k`` best set to -inf (None: unchanged)."""
    if k is None or k >= scores.shape[1]:
        return scores
    top = torch.topk(scores, k, dim=1)
    return torch.full_like(scores, NEG_INF).scatter(1, top.indices, top.values)
