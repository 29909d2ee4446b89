"""Properties of greedy, beam and sampling, and agreement of cached search with teacher forcing."""

import math

import pytest
import torch

from decoding import LengthReward, NGramLM, beam_search, greedy_search, sample
from tests.conftest import hf_lm, tiny_gpt2, tiny_marian


@pytest.mark.parametrize("seed", range(3))
def test_beam_of_one_is_greedy(kind, seed):
    lm, source = hf_lm(kind, seed)
    for max_len in (0, 3, 10):
        g = greedy_search(lm, source, max_len=max_len, min_len=min(max_len, 2))
        b = beam_search(lm, source, beam_size=1, max_len=max_len, min_len=min(max_len, 2))
        assert g.best.token_ids == b.best.token_ids
        assert g.best.logprob == pytest.approx(b.best.logprob, abs=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_greedy_matches_generate(seed):
    """Token for token, up to our forced EOS at max_len (generate stops without it)."""
    gpt2 = tiny_gpt2(seed, scale=2.0)
    marian = tiny_marian(seed, scale=1.5)
    from decoding.hf import HFCausalLM, HFSeq2SeqLM
    cases = [(HFCausalLM(gpt2), gpt2, (3, 4, 5), 3), (HFSeq2SeqLM(marian), marian, (3, 4, 5, 0), 1)]
    for lm, model, source, skip in cases:
        ours = greedy_search(lm, source, max_len=12).best.token_ids
        kwargs = {"bad_words_ids": [[t] for t in lm.masked_ids]} if lm.masked_ids else {}
        ref = model.generate(torch.tensor([source]), do_sample=False, num_beams=1, max_new_tokens=13,
                             pad_token_id=lm.eos_id, **kwargs)[0].tolist()
        ref = ref[len(source):] if skip == 3 else ref[1:]
        if lm.eos_id in ref:
            assert ours == tuple(ref[: ref.index(lm.eos_id) + 1])
        else:
            assert ours[:-1] == tuple(ref[:12]) and ours[-1] == lm.eos_id


def test_cached_logprobs_equal_teacher_forcing(kind):
    lm, source = hf_lm(kind, 1)
    for hyp in beam_search(lm, source, beam_size=6, max_len=8).hypotheses + sample(
            lm, source, n=6, max_len=8, seed=3).hypotheses:
        forced = lm.score(source, hyp.token_ids)
        assert torch.allclose(torch.tensor(hyp.token_logprobs, dtype=forced.dtype), forced, atol=1e-5)
        assert hyp.logprob == pytest.approx(float(forced.sum()), abs=1e-5)


def test_beam_hypotheses_sorted_finished_and_within_length():
    lm = NGramLM.random(6, order=3, seed=0)
    res = beam_search(lm, (1, 2), beam_size=5, max_len=6, min_len=2)
    scores = [h.score for h in res.hypotheses]
    assert scores == sorted(scores, reverse=True)
    assert len(res.hypotheses) == 5
    assert all(h.finished and 2 <= h.length <= 6 for h in res.hypotheses)


def test_length_reward_lengthens_and_keeps_logprob_pure():
    lm = NGramLM.random(6, order=2, seed=0, eos_bias=2.0)
    plain = beam_search(lm, (1,), beam_size=4, max_len=10)
    rewarded = beam_search(lm, (1,), beam_size=4, max_len=10, scorers=[LengthReward(3.0)])
    best = rewarded.best
    assert best.length >= plain.best.length
    assert best.score == pytest.approx(best.logprob + 3.0 * best.length)
    assert best.logprob == pytest.approx(float(lm.score((1,), best.token_ids).sum()))


def test_sampling_is_seeded_and_follows_the_model():
    lm = NGramLM.random(4, order=2, seed=0)
    a = sample(lm, (1,), n=2000, max_len=3, seed=7)
    b = sample(lm, (1,), n=2000, max_len=3, seed=7)
    assert [h.token_ids for h in a.hypotheses] == [h.token_ids for h in b.hypotheses]
    first = torch.tensor([h.token_ids[0] for h in a.hypotheses])
    freq = torch.bincount(first, minlength=4).double() / len(first)
    assert torch.allclose(freq, lm.logprobs(lm.start((1,)))[0].exp(), atol=0.04)
    unfinished = [h for h in a.hypotheses if not h.finished]
    assert all(h.length == 3 for h in unfinished)


def test_top_k_one_is_greedy_and_top_p_restricts():
    lm = NGramLM.random(6, order=2, seed=4)
    greedy = greedy_search(lm, (1,), max_len=5).best.token_ids
    for h in sample(lm, (1,), n=5, max_len=5, top_k=1).hypotheses:
        if h.finished:
            assert h.token_ids == greedy
    first = lm.logprobs(lm.start((1,)))[0].exp()
    nucleus = {int(first.argmax())}
    tiny_p = sample(lm, (1,), n=50, max_len=2, top_p=float(first.max()) * 0.99, seed=1)
    assert {h.token_ids[0] for h in tiny_p.hypotheses} == nucleus


def test_max_len_zero_gives_the_empty_output():
    lm = NGramLM.random(4, seed=0)
    res = beam_search(lm, (1,), beam_size=3, max_len=0)
    assert [h.token_ids for h in res.hypotheses] == [(0,)]
    assert res.best.logprob == pytest.approx(float(lm.logprobs(lm.start((1,)))[0, 0]))
    assert math.isfinite(res.best.logprob)
