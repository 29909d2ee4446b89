"""Searches run where the model's log-probs live and whatever their dtype: on a CUDA model they give the CPU
results, and log-probs in a low-precision dtype are searched as the float64 numbers they are."""

import copy

import pytest
import torch

from decoding import (
    ExactClassifier,
    LengthRange,
    LengthReward,
    NGramLM,
    NoRepeatNgram,
    NotDegenerate,
    beam_search,
    conditional_beam_search,
    exact_search,
    greedy_search,
    length_conditional_modes,
    sample,
)
from tests.conftest import hf_lm


def searches(lm, source):
    """{name: SearchResult} of every search on ``lm``, with scorers and constraints."""
    attribute = NotDegenerate() & LengthRange(1, 3)
    results = {
        "greedy": greedy_search(lm, source, max_len=6, min_len=1),
        "beam": beam_search(lm, source, beam_size=3, max_len=6, scorers=[LengthReward(0.5)]),
        "exact": exact_search(lm, source, max_len=5, constraints=[NoRepeatNgram(2)], batch_size=3),
        "conditional_beam": conditional_beam_search(lm, source, attribute=attribute,
                                                    classifier=ExactClassifier(lm, attribute, max_len=4),
                                                    beam_size=3, max_len=4, scorers=[LengthReward(0.2)]),
        "sample": sample(lm, source, n=6, max_len=6, seed=2),
    }
    for n, res in length_conditional_modes(lm, source, lengths=[0, 2, 3], batch_size=2).items():
        results[f"length_conditional_{n}"] = res
    return results


def outputs(results):
    """What a search returned, exactly: every hypothesis's fields and the certificate."""
    return {name: ([(h.token_ids, h.logprob, h.score, h.token_logprobs, h.finished) for h in res.hypotheses],
                   res.certified) for name, res in results.items()}


def assert_close(results, expected, tol):
    """The same outputs and certificates, log-probs and scores within ``tol``."""
    assert results.keys() == expected.keys()
    for name, res in results.items():
        ref = expected[name]
        assert res.certified == ref.certified, name
        assert [h.token_ids for h in res.hypotheses] == [h.token_ids for h in ref.hypotheses], name
        for h, r in zip(res.hypotheses, ref.hypotheses, strict=True):
            assert h.finished == r.finished, name
            assert h.logprob == pytest.approx(r.logprob, abs=tol), name
            assert h.score == pytest.approx(r.score, abs=tol), name
            assert h.token_logprobs == pytest.approx(r.token_logprobs, abs=tol), name


class Cast:
    """``lm`` with its log-probs returned in ``dtype``."""

    def __init__(self, lm, dtype):
        self.lm, self.dtype = lm, dtype
        self.eos_id, self.vocab_size, self.masked_ids = lm.eos_id, lm.vocab_size, lm.masked_ids

    def __getattr__(self, name):
        return getattr(self.lm, name)

    def logprobs(self, state):
        return self.lm.logprobs(state).to(self.dtype)

    def score(self, source_ids, target_ids):
        return self.lm.score(source_ids, target_ids).to(self.dtype)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("seed", range(2))
def test_searches_on_cuda_equal_cpu(kind, seed):
    lm, source = hf_lm(kind, seed)
    on_cuda = type(lm)(copy.deepcopy(lm.model).to("cuda"))
    assert on_cuda.logprobs(on_cuda.start(source)).is_cuda
    assert_close(searches(on_cuda, source), searches(lm, source), tol=1e-4)


def test_every_tensor_a_search_creates_is_on_the_log_probs_device():
    """A stand-in for CUDA on any machine: tensors created without a device go to ``meta`` here, which holds no
    data, while the toy's log-probs stay on the CPU; the searches give their CPU results only if each tensor they
    create is put where the log-probs are."""
    toy = NGramLM.random(5, order=3, seed=0)
    expected = outputs(searches(toy, (1, 2)))
    with torch.device("meta"):
        assert outputs(searches(toy, (1, 2))) == expected


@pytest.mark.parametrize("seed", range(3))
def test_float32_log_probs_give_the_float64_results(seed):
    toy = NGramLM.random(5, order=3, seed=seed)
    assert_close(searches(Cast(toy, torch.float32), (1, 2)), searches(toy, (1, 2)), tol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("seed", range(3))
def test_low_precision_log_probs_are_searched_in_float64(seed, dtype):
    low = Cast(NGramLM.random(5, order=3, seed=seed), dtype)
    assert outputs(searches(low, (1, 2))) == outputs(searches(Cast(low, torch.float64), (1, 2)))
