"""RUM-SUNDAE: a non-autoregressive sequence-to-sequence transformer whose encoder and decoder both start from a
masked language model, trained with step-unrolled denoising (SUNDAE; Savinov et al., ICLR 2022) and decoded by
iterative refinement.

Architecture (``RumSundae``), from a BERT body (``transformers.BertModel``; the offline one is all-MiniLM-L6-v2,
which has no MLM head):
- encoder: the body as it is;
- decoder: a copy of the body's embeddings and layers, self-attention **bidirectional** (the body's own, unmasked
  but for padding), with a new cross-attention block (BERT's attention module, randomly initialised) between
  each layer's self-attention and feed-forward;
- output: a prediction transform (dense, GELU, LayerNorm, as BERT's MLM head) then the decoder's word embeddings
  (tied) plus a bias; the body's special tokens are never predicted;
- length: a linear classifier over target lengths 1..``max_target`` from the mean of the encoder states.

Training (``sundae_loss``): each target is corrupted by replacing a fraction of its tokens, drawn per sequence
uniformly in (0, 1], with uniformly random non-special tokens; the model denoises it, its prediction is sampled
(no gradient through the sample) and fed back for ``unroll`` steps in all; the loss is the mean of the
cross-entropies of every step against the clean target, plus the length classifier's cross-entropy.

Decoding (``decode``): the ``lengths`` most probable target lengths each start from random tokens (seeded), are
refined for at most ``steps`` steps (each position takes its argmax, or a sample at ``temperature`` > 0; stop
when nothing changes), and the candidate with the best mean log-probability of its tokens wins. ``steps = 0``
returns the initial tokens.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from transformers import BertModel
from transformers.models.bert.modeling_bert import BertAttention

from models.errors import ConfigError

__all__ = ["Decoded", "RumSundae", "corrupt", "decode", "sundae_loss"]


def _key_mask(keep: Tensor, dtype: torch.dtype) -> Tensor:
    """(B, 1, 1, K) additive mask from a (B, K) boolean one (True: a real token)."""
    return torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill(
        ~keep, torch.finfo(dtype).min)[:, None, None]


class _DecoderLayer(nn.Module):
    """A copy of one body layer (bidirectional self-attention, feed-forward) with cross-attention between them."""

    def __init__(self, layer: Any, config: Any):
        super().__init__()
        self.attention: nn.Module = layer.attention
        self.crossattention = BertAttention(config, is_causal=False, is_cross_attention=True)
        self.intermediate: nn.Module = layer.intermediate
        self.output: nn.Module = layer.output

    def forward(self, h: Tensor, self_mask: Tensor, enc: Tensor, enc_mask: Tensor) -> Tensor:
        h = self.attention(h, self_mask)[0]
        h = self.crossattention(h, None, encoder_hidden_states=enc, encoder_attention_mask=enc_mask)[0]
        return self.output(self.intermediate(h), h)


class RumSundae(nn.Module):
    """The encoder-decoder of this module's docstring over ``body``; ``special_ids``: tokens never predicted nor
    used to corrupt (default: the tokenizer's special tokens as the body's config names them)."""

    def __init__(self, body: BertModel, *, max_target: int = 128, special_ids: tuple[int, ...] | None = None):
        super().__init__()
        config = body.config
        if max_target < 1 or max_target > config.max_position_embeddings:
            raise ConfigError(f"max_target must be in 1..{config.max_position_embeddings}, got {max_target}")
        self.config, self.max_target = config, max_target
        self.encoder = body
        self.decoder_embeddings: Any = copy.deepcopy(body.embeddings)
        self.decoder_layers = nn.ModuleList(_DecoderLayer(copy.deepcopy(layer), config) for layer in body.encoder.layer)
        d, vocab = config.hidden_size, config.vocab_size
        self.transform = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.LayerNorm(d, eps=config.layer_norm_eps))
        self.bias = nn.Parameter(torch.zeros(vocab))
        self.length = nn.Linear(d, max_target)
        specials = special_ids if special_ids is not None else tuple(
            i for i in (config.pad_token_id, getattr(config, "cls_token_id", None),
                        getattr(config, "sep_token_id", None), getattr(config, "mask_token_id", None)) if i is not None)
        self.special: Tensor
        self.register_buffer("special", torch.zeros(vocab, dtype=torch.bool), persistent=False)
        self.special[list(specials)] = True

    def encode(self, src: Tensor, src_keep: Tensor) -> Tensor:
        return self.encoder(input_ids=src, attention_mask=src_keep.long()).last_hidden_state

    def length_logits(self, enc: Tensor, src_keep: Tensor) -> Tensor:
        """(B, max_target): logits of target lengths 1..max_target."""
        keep = src_keep[..., None].to(enc.dtype)
        return self.length((enc * keep).sum(1) / keep.sum(1).clamp_min(1))

    def forward(self, enc: Tensor, src_keep: Tensor, tgt: Tensor, tgt_keep: Tensor) -> Tensor:
        """(B, T, V) logits of every target position given the encoder states and the (noisy) target tokens."""
        h = self.decoder_embeddings(input_ids=tgt)
        self_mask, enc_mask = _key_mask(tgt_keep, h.dtype), _key_mask(src_keep, h.dtype)
        for layer in self.decoder_layers:
            h = layer(h, self_mask, enc, enc_mask)
        logits = self.transform(h) @ self.decoder_embeddings.word_embeddings.weight.T + self.bias
        return logits.masked_fill(self.special, torch.finfo(logits.dtype).min)


def corrupt(model: RumSundae, tgt: Tensor, tgt_keep: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Each sequence's tokens replaced, each with a probability drawn per sequence in (0, 1], by uniformly random
    non-special tokens; padding stays."""
    b, t = tgt.shape
    rate = 1 - torch.rand(b, 1, generator=generator, device=tgt.device)
    flip = (torch.rand(b, t, generator=generator, device=tgt.device) < rate) & tgt_keep
    allowed = torch.nonzero(~model.special).view(-1)
    noise = allowed[torch.randint(len(allowed), (b, t), generator=generator, device=tgt.device)]
    return torch.where(flip, noise, tgt)


def sundae_loss(model: RumSundae, src: Tensor, src_keep: Tensor, tgt: Tensor, tgt_keep: Tensor, *, unroll: int = 2,
                generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, float]]:
    """The SUNDAE loss of a batch (this module's docstring) and its parts (per unroll step, length)."""
    if unroll < 1:
        raise ConfigError(f"unroll must be >= 1, got {unroll}")
    enc = model.encode(src, src_keep)
    lengths = tgt_keep.sum(1)
    if int(lengths.max()) > model.max_target or int(lengths.min()) < 1:
        raise ConfigError(f"targets must have 1..{model.max_target} tokens")
    length_loss = F.cross_entropy(model.length_logits(enc, src_keep), lengths - 1)
    noisy = corrupt(model, tgt, tgt_keep, generator)
    labels = tgt.masked_fill(~tgt_keep, -100)
    parts: dict[str, float] = {"length": length_loss.item()}
    total = length_loss
    for step in range(unroll):
        logits = model(enc, src_keep, noisy, tgt_keep)
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        parts[f"unroll{step + 1}"] = loss.item()
        total = total + loss / unroll
        if step + 1 < unroll:
            with torch.no_grad():
                sample = torch.multinomial(logits.detach().flatten(0, 1).softmax(-1), 1, generator=generator)
            noisy = torch.where(tgt_keep, sample.view_as(tgt), tgt)
    return total, parts


@dataclass(frozen=True)
class Decoded:
    tokens: list[int]
    length: int
    steps: int  # refinement steps run for the winning candidate
    mean_logprob: float
    seconds: float


def decode(model: RumSundae, src: list[int], *, steps: int = 8, lengths: int = 3, temperature: float = 0.0,
           seed: int = 0) -> Decoded:
    """Iterative refinement from random tokens for each of the ``lengths`` most probable target lengths."""
    if steps < 0 or lengths < 1 or temperature < 0:
        raise ConfigError(f"steps must be >= 0, lengths >= 1 and temperature >= 0; got {steps}, {lengths}, "
                          f"{temperature}")
    t0 = time.perf_counter()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    model.eval()
    with torch.inference_mode():
        source = torch.tensor([src], device=device)
        src_keep = torch.ones_like(source, dtype=torch.bool)
        enc = model.encode(source, src_keep)
        candidates = model.length_logits(enc, src_keep)[0].topk(min(lengths, model.max_target)).indices + 1
        allowed = torch.nonzero(~model.special).view(-1)
        best: Decoded | None = None
        for length in candidates.tolist():
            tokens = allowed[torch.randint(len(allowed), (1, length), generator=generator, device=device)]
            keep = torch.ones_like(tokens, dtype=torch.bool)
            ran = 0
            for _ in range(steps):
                logits = model(enc, src_keep, tokens, keep)[0]
                new = (logits.argmax(-1) if temperature == 0 else torch.multinomial(
                    (logits / temperature).softmax(-1), 1, generator=generator)[:, 0])[None]
                ran += 1
                if torch.equal(new, tokens):
                    break
                tokens = new
            logp = model(enc, src_keep, tokens, keep)[0].log_softmax(-1)
            mean = float(logp.gather(1, tokens[0][:, None]).mean())
            if best is None or mean > best.mean_logprob:
                best = Decoded(tokens[0].tolist(), length, ran, mean, 0.0)
    assert best is not None
    return Decoded(best.tokens, best.length, best.steps, best.mean_logprob, time.perf_counter() - t0)
