import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import itertools
from collections.abc import Sequence

import pytest
import torch
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    MarianConfig,
    MarianMTModel,
    Qwen2Config,
    Qwen2ForCausalLM,
    T5Config,
    T5ForConditionalGeneration,
)

from decoding.constraints import Constraint, accepted
from decoding.hf import HFCausalLM, HFSeq2SeqLM

VOCAB = 6


def tiny_gpt2(seed: int, scale: float = 6.0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_positions=32, n_embd=16, n_layer=2, n_head=2,
                                       bos_token_id=1, eos_token_id=0, pad_token_id=None))
    return _peaked(model, scale)


def tiny_llama(seed: int, scale: float = 6.0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
                                         bos_token_id=1, eos_token_id=0, pad_token_id=None))
    return _peaked(model, scale)


def tiny_marian(seed: int, scale: float = 3.0) -> MarianMTModel:
    torch.manual_seed(seed)
    model = MarianMTModel(MarianConfig(vocab_size=VOCAB, d_model=16, encoder_layers=2, decoder_layers=2,
                                       encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                                       decoder_ffn_dim=32, max_position_embeddings=32, pad_token_id=VOCAB - 1,
                                       eos_token_id=0, decoder_start_token_id=VOCAB - 1, forced_eos_token_id=None))
    return _peaked(model, scale)


def tiny_gemma3(seed: int, sliding_window: int = 16) -> Gemma3ForCausalLM:
    torch.manual_seed(seed)
    return Gemma3ForCausalLM(Gemma3TextConfig(
        vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2,
        num_key_value_heads=1, head_dim=8, sliding_window=sliding_window, max_position_embeddings=64,
        bos_token_id=1, eos_token_id=0, pad_token_id=VOCAB - 1,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"])).eval()


def tiny_qwen2(seed: int) -> Qwen2ForCausalLM:
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(Qwen2Config(vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                                        bos_token_id=1, eos_token_id=0)).eval()


def tiny_t5(seed: int) -> T5ForConditionalGeneration:
    torch.manual_seed(seed)
    return T5ForConditionalGeneration(T5Config(vocab_size=VOCAB, d_model=16, d_kv=8, d_ff=32, num_layers=2,
                                               num_heads=2, decoder_start_token_id=VOCAB - 1,
                                               pad_token_id=VOCAB - 1, eos_token_id=0)).eval()


def tiny_bart(seed: int) -> BartForConditionalGeneration:
    torch.manual_seed(seed)
    return BartForConditionalGeneration(BartConfig(
        vocab_size=VOCAB, d_model=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64,
        pad_token_id=VOCAB - 1, eos_token_id=0, decoder_start_token_id=0, bos_token_id=1,
        forced_eos_token_id=None)).eval()


def _peaked(model, scale):
    """Random init gives near-uniform distributions; scaling weights gives peaked ones, as trained models have."""
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
    return model.eval()


def hf_lm(kind: str, seed: int):
    if kind == "gpt2":
        return HFCausalLM(tiny_gpt2(seed)), (3, 4, 5)
    if kind == "llama":
        return HFCausalLM(tiny_llama(seed)), (2, 4)
    return HFSeq2SeqLM(tiny_marian(seed)), (3, 4, 2, 0)


def enumerate_outputs(lm, source: Sequence[int], max_len: int, min_len: int = 0,
                      constraints: Sequence[Constraint] = ()):
    """Every finished output allowed by the constraints with its teacher-forced log-probability."""
    tokens = [t for t in range(lm.vocab_size) if t != lm.eos_id and t not in lm.masked_ids]
    out = []
    for n in range(min_len, max_len + 1):
        for y in itertools.product(tokens, repeat=n):
            if accepted(constraints, y, tuple(source), lm.eos_id):
                out.append((y + (lm.eos_id,), float(lm.score(source, y + (lm.eos_id,)).sum())))
    return out


def brute_mode(lm, source, max_len, min_len=0, constraints=()):
    return max(enumerate_outputs(lm, source, max_len, min_len, constraints), key=lambda e: e[1])


@pytest.fixture(params=["gpt2", "llama", "marian"])
def kind(request):
    return request.param
