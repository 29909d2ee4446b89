"""Properties of the certificates over random toy models and random search arguments, against enumeration:
a certified result is the mode, and a result stopped by a budget is uncertified and bounds the mode."""

import math

import numpy as np
import pytest

from decoding import (
    BannedTokens,
    MaxLength,
    MinLength,
    NGramLM,
    NoRepeatNgram,
    NotCopyOfSource,
    TabularLM,
    exact_search,
    length_conditional_modes,
)
from decoding.constraints import accepted
from tests.conftest import enumerate_outputs

TOL = 1e-9


def random_lm(rng):
    """A small random NGramLM, TabularLM, or TabularLM with ties everywhere (EOS = 0)."""
    kind = rng.integers(3)
    vocab = int(rng.integers(3, 6 if kind == 0 else 5))
    seed = int(rng.integers(2 ** 31))
    if kind == 0:
        masked = [vocab - 1] if vocab > 3 and rng.random() < 0.3 else []
        return NGramLM.random(vocab, int(rng.integers(1, 4)), seed=seed, temperature=float(rng.choice([0.5, 1.5, 4])),
                              eos_bias=float(rng.uniform(-2, 2)), masked_ids=masked)
    if kind == 1:
        return TabularLM.random(vocab, int(rng.integers(2, 4)), seed=seed, concentration=float(rng.choice([0.1, 0.5])))
    table = TabularLM.random(vocab, 3, seed=seed).table
    return TabularLM({y: 1.0 for y in table if rng.random() < 0.4} or {(): 1.0}, vocab, 0)


def random_constraints(rng, vocab):
    pool = [MinLength(int(rng.integers(4))), MaxLength(int(rng.integers(5))), NoRepeatNgram(int(rng.integers(1, 3))),
            BannedTokens([int(rng.integers(vocab))]), NotCopyOfSource()]
    return [pool[i] for i in rng.permutation(len(pool))[:rng.integers(3)]]


def search_args(rng):
    return {"max_nodes": [None, None, 1, 2, 3, 5, 8, 20][rng.integers(8)], "batch_size": int(rng.integers(1, 6)),
            "seed_beam_size": int(rng.integers(4))}


def check_hypothesis(hyp, lm, source, constraints, lengths, what):
    assert hyp.finished and hyp.token_ids[-1] == lm.eos_id and hyp.length in lengths, what
    assert accepted(constraints, hyp.token_ids[:-1], source, lm.eos_id), what
    assert lm.eos_id not in hyp.token_ids[:-1] and not set(hyp.token_ids) & set(lm.masked_ids), what
    assert hyp.logprob == pytest.approx(float(lm.score(source, hyp.token_ids).sum()), abs=TOL), what


def modes_by_length(lm, source, max_len, constraints):
    """{length: the log-probability of the best allowed output of that length} over outputs of positive
    probability."""
    best: dict[int, float] = {}
    for y, lp in enumerate_outputs(lm, source, max_len, constraints=constraints):
        if lp > -math.inf:
            best[len(y) - 1] = max(lp, best.get(len(y) - 1, -math.inf))
    return best


def test_exact_search_certificates_and_bounds_hold():
    rng = np.random.default_rng(0)
    for case in range(250):
        lm = random_lm(rng)
        source = tuple(int(t) for t in rng.integers(lm.vocab_size, size=rng.integers(4)))
        max_len = int(rng.integers(5))
        min_len = int(rng.integers(max_len + 1))
        constraints = random_constraints(rng, lm.vocab_size)
        by_length = modes_by_length(lm, source, max_len, constraints)
        mode = max((lp for n, lp in by_length.items() if n >= min_len), default=None)
        args = search_args(rng)
        if rng.random() < 0.4:
            args["lower_bound"] = min(0.0, (mode if mode is not None else -1.0)
                                      + float(rng.choice([-2, -0.1, -1e-6, 1e-6, 0.5])))
        lower = args.get("lower_bound", -math.inf)
        what = (case, lm.signature(), source, max_len, min_len, constraints, args, mode)
        res = exact_search(lm, source, max_len=max_len, min_len=min_len, constraints=constraints, **args)
        assert res.certified == (res.stats.budget_hit is None), what
        if res.best is not None:
            check_hypothesis(res.best, lm, source, constraints, range(min_len, max_len + 1), what)
            assert mode is not None and lower - TOL <= res.best.logprob <= mode + TOL, what
        if res.certified:
            if mode is not None and mode >= lower + TOL:
                assert res.best is not None and res.best.logprob == pytest.approx(mode, abs=TOL), what
            elif mode is None or mode < lower - TOL:
                assert res.best is None, what
        elif mode is not None and mode >= lower:
            assert res.stats.upper_bound >= mode - TOL, what


def test_length_conditional_certificates_and_bounds_hold():
    rng = np.random.default_rng(1)
    for case in range(250):
        lm = random_lm(rng)
        source = tuple(int(t) for t in rng.integers(lm.vocab_size, size=rng.integers(4)))
        lengths = sorted({int(n) for n in rng.integers(5, size=rng.integers(1, 4))})
        constraints = random_constraints(rng, lm.vocab_size)
        by_length = modes_by_length(lm, source, lengths[-1], constraints)
        args = search_args(rng)
        results = length_conditional_modes(lm, source, lengths=lengths, constraints=constraints, **args)
        assert sorted(results) == lengths
        for n, res in results.items():
            mode = by_length.get(n)
            what = (case, lm.signature(), source, n, lengths, constraints, args, mode)
            if res.stats.budget_hit is None:
                assert res.certified, what
            if res.best is not None:
                check_hypothesis(res.best, lm, source, constraints, [n], what)
                assert mode is not None and res.best.logprob <= mode + TOL, what
            if res.certified:
                if mode is None:
                    assert res.best is None, what
                else:
                    assert res.best is not None and res.best.logprob == pytest.approx(mode, abs=TOL), what
            elif mode is not None:
                assert res.stats.upper_bound >= mode - TOL, what
