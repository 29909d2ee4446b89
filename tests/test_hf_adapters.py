"""The HF adapters: masking, batching rows of different depths, and errors that say what is wrong."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from decoding import NonFiniteLogProbError, SearchInputError, exact_search, greedy_search
from decoding.hf import HFCausalLM, HFSeq2SeqLM
from tests.conftest import tiny_bart, tiny_gemma3, tiny_gpt2, tiny_llama, tiny_marian, tiny_qwen2, tiny_t5


def test_masked_tokens_are_never_emitted_and_declared():
    lm = HFSeq2SeqLM(tiny_marian(0))
    assert lm.masked_ids == (5,)  # pad == decoder start
    assert lm.signature()["masked_ids"] == [5]
    lp = lm.logprobs(lm.start((3, 4, 0)))
    assert lp[0, 5] == float("-inf")
    assert torch.logsumexp(lp, -1).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("lm", [
    HFCausalLM(tiny_gpt2(0)), HFCausalLM(tiny_llama(0)), HFCausalLM(tiny_gemma3(0)), HFCausalLM(tiny_qwen2(0)),
    HFSeq2SeqLM(tiny_marian(0)), HFSeq2SeqLM(tiny_t5(0)), HFSeq2SeqLM(tiny_bart(0)),
], ids=lambda lm: type(lm.model).__name__)
def test_rows_of_different_depths_batch_like_single_rows(lm):
    """Batches of paths of different lengths (left-padded for decoders, grouped by length for encoder-decoders)
    give the same distributions as one row at a time, and both equal teacher forcing."""
    root = lm.start((3, 4, 0))
    a = lm.extend(root, torch.tensor([4]))
    b = lm.extend(lm.extend(a, torch.tensor([2])), torch.tensor([1]))
    batch = lm.extend(lm.concat([root, b, a]), torch.tensor([1, 3, 4]))
    single = [lm.extend(s, torch.tensor([t])) for s, t in [(root, 1), (b, 3), (a, 4)]]
    assert torch.allclose(lm.logprobs(batch), torch.cat([lm.logprobs(s) for s in single]), atol=1e-5)
    forced = lm.score((3, 4, 0), (4, 2, 1, 3))
    cached = [lm.logprobs(s)[0, t] for s, t in [(root, 4), (a, 2), (lm.extend(a, torch.tensor([2])), 1), (b, 3)]]
    assert torch.allclose(torch.stack(cached), forced, atol=1e-5)
    if isinstance(lm, HFSeq2SeqLM):
        assert batch.source.cross_kv[0][0].shape[0] == 1  # cross-attention states stored once per source


def test_sliding_window_limit_is_explained():
    lm = HFCausalLM(tiny_gemma3(0, sliding_window=6))
    with pytest.raises(SearchInputError, match="sliding attention window"):
        greedy_search(lm, (3, 4, 2), max_len=8, min_len=8)


def test_empty_source_for_seq2seq_is_rejected():
    with pytest.raises(SearchInputError, match="empty source"):
        greedy_search(HFSeq2SeqLM(tiny_marian(0)), [], max_len=3)


def test_model_without_eos_needs_eos_id():
    model = GPT2LMHeadModel(GPT2Config(vocab_size=8, n_positions=16, n_embd=8, n_layer=1, n_head=1,
                                       bos_token_id=None, eos_token_id=None))
    model.generation_config.eos_token_id = None
    with pytest.raises(SearchInputError, match="eos_id"):
        HFCausalLM(model)
    assert HFCausalLM(model, eos_id=3).eos_id == 3


def test_nan_logits_raise_a_clear_error():
    model = tiny_gpt2(0)
    with torch.no_grad():
        model.lm_head.weight[2, 0] = float("nan")
    with pytest.raises(NonFiniteLogProbError, match="NaN"):
        exact_search(HFCausalLM(model), (3, 4), max_len=3)


def test_over_long_input_is_rejected():
    with pytest.raises(SearchInputError, match="exceeds"):
        greedy_search(HFCausalLM(tiny_gpt2(0)), [3] * 40, max_len=2)


def test_decoder_position_limit_is_explained():
    """The decoder's sequence (start token + output) fits the model's 32 positions up to 31 output tokens."""
    lm = HFSeq2SeqLM(tiny_marian(0))
    assert greedy_search(lm, (3, 4, 0), max_len=31, min_len=31).best.length == 31
    with pytest.raises(SearchInputError, match="decoder sequence of 33 tokens exceeds the model's 32 positions"):
        greedy_search(lm, (3, 4, 0), max_len=40, min_len=40)


@pytest.mark.parametrize("build", [
    lambda: HFCausalLM(tiny_gpt2(0), eos_id=99), lambda: HFCausalLM(tiny_gpt2(0), eos_id=-1),
    lambda: HFCausalLM(tiny_gpt2(0), eos_id=True), lambda: HFSeq2SeqLM(tiny_marian(0), eos_id=6),
], ids=["causal-99", "causal--1", "causal-bool", "seq2seq-6"])
def test_eos_outside_the_vocabulary_is_rejected(build):
    with pytest.raises(SearchInputError, match="eos_id"):
        build()


@pytest.mark.parametrize("lm", [HFCausalLM(tiny_gpt2(0)), HFSeq2SeqLM(tiny_marian(0))], ids=["causal", "seq2seq"])
def test_source_ids_outside_the_vocabulary_are_rejected(lm):
    with pytest.raises(SearchInputError, match=r"source_ids\[2\]"):
        greedy_search(lm, (3, 4, 6), max_len=3)
