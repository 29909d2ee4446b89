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
  (tied) plus a bias, over an output vocabulary (``output_ids``: by default every token; ``train`` uses the
  training pairs' tokens, 8.5k of the 30.5k for KJV -> BBE, which makes a step ~2x cheaper); the body's special
  tokens are never predicted;
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
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from transformers import BertModel
from transformers.models.bert.modeling_bert import BertAttention

from models.errors import ConfigError

__all__ = ["Decoded", "NARConfig", "RumSundae", "corrupt", "decode", "load", "random_tokens", "save", "sundae_loss",
           "train"]


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
    used to corrupt (default: the tokenizer's special tokens as the body's config names them); ``output_ids``: the
    tokens it predicts (default: all but the special ones). ``forward``'s logits are over ``output_ids``."""

    def __init__(self, body: BertModel, *, max_target: int = 128, special_ids: tuple[int, ...] | None = None,
                 output_ids: Sequence[int] | None = None):
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
        self.length = nn.Linear(d, max_target)
        specials = special_ids if special_ids is not None else tuple(
            i for i in (config.pad_token_id, getattr(config, "cls_token_id", None),
                        getattr(config, "sep_token_id", None), getattr(config, "mask_token_id", None)) if i is not None)
        self.special_ids = tuple(sorted(set(specials)))
        outputs = sorted(set(range(vocab) if output_ids is None else output_ids) - set(self.special_ids))
        if not outputs or outputs[0] < 0 or outputs[-1] >= vocab:
            raise ConfigError(f"output_ids must be non-special token ids in 0..{vocab - 1}")
        self.output_ids: Tensor
        self.output_index: Tensor  # a vocabulary id's position in output_ids, -100 where it is not predicted
        self.register_buffer("output_ids", torch.tensor(outputs), persistent=False)
        self.register_buffer("output_index", torch.full((vocab,), -100).index_put_(
            (self.output_ids,), torch.arange(len(outputs))), persistent=False)
        self.bias = nn.Parameter(torch.zeros(len(outputs)))

    def encode(self, src: Tensor, src_keep: Tensor) -> Tensor:
        return self.encoder(input_ids=src, attention_mask=src_keep.long()).last_hidden_state

    def length_logits(self, enc: Tensor, src_keep: Tensor) -> Tensor:
        """(B, max_target): logits of target lengths 1..max_target."""
        keep = src_keep[..., None].to(enc.dtype)
        return self.length((enc * keep).sum(1) / keep.sum(1).clamp_min(1))

    def forward(self, enc: Tensor, src_keep: Tensor, tgt: Tensor, tgt_keep: Tensor) -> Tensor:
        """(B, T, len(output_ids)) logits of every target position given the encoder states and the (noisy) target
        tokens."""
        h = self.decoder_embeddings(input_ids=tgt)
        self_mask, enc_mask = _key_mask(tgt_keep, h.dtype), _key_mask(src_keep, h.dtype)
        for layer in self.decoder_layers:
            h = layer(h, self_mask, enc, enc_mask)
        return self.transform(h) @ self.decoder_embeddings.word_embeddings.weight[self.output_ids].T + self.bias


def corrupt(model: RumSundae, tgt: Tensor, tgt_keep: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Each sequence's tokens replaced, each with a probability drawn per sequence in (0, 1], by uniformly random
    output tokens; padding stays."""
    b, t = tgt.shape
    rate = 1 - torch.rand(b, 1, generator=generator, device=tgt.device)
    flip = (torch.rand(b, t, generator=generator, device=tgt.device) < rate) & tgt_keep
    return torch.where(flip, random_tokens(model, (b, t), generator), tgt)


def random_tokens(model: RumSundae, shape: tuple[int, ...], generator: torch.Generator | None = None) -> Tensor:
    """Uniformly random output tokens (vocabulary ids)."""
    ids = model.output_ids
    return ids[torch.randint(len(ids), shape, generator=generator, device=ids.device)]


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
    labels = model.output_index[tgt].masked_fill(~tgt_keep, -100)
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
            noisy = torch.where(tgt_keep, model.output_ids[sample.view_as(tgt)], tgt)
    return total, parts


@dataclass(frozen=True)
class Decoded:
    tokens: list[int]
    length: int
    steps: int  # refinement steps run for the winning candidate
    mean_logprob: float
    seconds: float
    forwards: int = 0  # decoder forwards over the batch of candidates


def decode(model: RumSundae, src: list[int], *, steps: int = 8, lengths: int = 3, temperature: float = 0.0,
           seed: int = 0) -> Decoded:
    """Iterative refinement from random tokens for each of the ``lengths`` most probable target lengths, all
    candidates in one batch; a candidate stops when a step leaves it unchanged."""
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
        candidates = (model.length_logits(enc, src_keep)[0].topk(min(lengths, model.max_target)).indices + 1).tolist()
        n, width = len(candidates), max(candidates)
        tokens = torch.zeros(n, width, dtype=torch.long, device=device)
        for i, length in enumerate(candidates):
            tokens[i, :length] = random_tokens(model, (length,), generator)
        keep = torch.arange(width, device=device) < torch.tensor(candidates, device=device)[:, None]
        enc, src_keep = enc.expand(n, -1, -1), src_keep.expand(n, -1)
        ran = torch.zeros(n, dtype=torch.long, device=device)
        active = torch.ones(n, dtype=torch.bool, device=device)
        for t in range(steps + 1):
            logp = model(enc, src_keep, tokens, keep).log_softmax(-1)
            own = logp.gather(-1, model.output_index[tokens].clamp_min(0)[..., None])[..., 0]
            mean = (own * keep).sum(1) / keep.sum(1)
            if t == steps or not active.any():
                break
            pick = logp.argmax(-1) if temperature == 0 else torch.multinomial(
                (logp / temperature).flatten(0, 1).softmax(-1), 1, generator=generator).view(n, width)
            new = torch.where(keep, model.output_ids[pick], 0)
            ran += active
            active &= (new != tokens).any(1)
            tokens = torch.where(active[:, None], new, tokens)
    win = int(mean.argmax())
    return Decoded(tokens[win, : candidates[win]].tolist(), candidates[win], int(ran[win]), float(mean[win]),
                   time.perf_counter() - t0, t + 1)


# ---------------------------------------------------------------- training, saving, loading

WEIGHTS, SETTINGS, OUTPUTS = "nar.safetensors", "nar.json", "output_ids.json"


@dataclass(frozen=True)
class NARConfig:
    """How ``train`` runs. ``init``: "mlm" (the body's pretrained weights) or "random" (the same architecture
    freshly initialised: the thesis's ablation); ``unroll``: SUNDAE steps (1 is plain denoising)."""

    init: str = "mlm"
    unroll: int = 2
    vocabulary: str = "train"  # the output vocabulary: "train" (the training pairs' tokens) or "all" (the MLM's)
    max_target: int = 64
    max_tokens: int = 2048  # source + target tokens per batch
    lr: float = 1e-4
    warmup_steps: int = 500
    max_steps: int = 4000
    max_minutes: float = 110.0
    eval_every: int = 500
    eval_sentences: int = 100
    decode_steps: int = 8
    decode_lengths: int = 3
    checkpoint_minutes: float = 10.0
    seed: int = 0
    threads: int = 2

    def __post_init__(self) -> None:
        if self.init not in ("mlm", "random"):
            raise ConfigError(f"init must be 'mlm' or 'random', got {self.init!r}")
        if self.vocabulary not in ("train", "all"):
            raise ConfigError(f"vocabulary must be 'train' or 'all', got {self.vocabulary!r}")
        if min(self.unroll, self.max_target, self.max_tokens, self.max_steps, self.eval_every,
               self.eval_sentences, self.decode_lengths) < 1 or self.decode_steps < 0:
            raise ConfigError("unroll, max_target, max_tokens, max_steps, eval_every, eval_sentences and "
                              "decode_lengths must be >= 1, decode_steps >= 0")


def initial_body(mlm: str | Path, init: str) -> BertModel:
    """The MLM's body (``init="mlm"``) or the same architecture randomly initialised (``"random"``)."""
    from transformers import BertConfig

    if init == "mlm":
        return BertModel.from_pretrained(mlm, add_pooling_layer=False)
    return BertModel(BertConfig.from_pretrained(mlm), add_pooling_layer=False)


def translate(model: RumSundae, tok: Any, sources: Sequence[str], cfg: NARConfig) -> list[str]:
    return [tok.decode(decode(model, list(tok(s, truncation=True, max_length=512)["input_ids"]),
                              steps=cfg.decode_steps, lengths=cfg.decode_lengths, seed=cfg.seed + i).tokens,
                       skip_special_tokens=True) for i, s in enumerate(sources)]


def bleu_chrf(hyps: Sequence[str], refs: Sequence[str]) -> tuple[float, float]:
    """Case-insensitive corpus BLEU and chrF (the MLM's vocabulary is lowercase)."""
    import sacrebleu

    return (sacrebleu.corpus_bleu(list(hyps), [list(refs)], lowercase=True).score,
            sacrebleu.corpus_chrf([h.lower() for h in hyps], [[r.lower() for r in refs]]).score)


def train(train_pairs: Any, dev_pairs: Any, out: Path, mlm: str | Path, cfg: NARConfig, *,
          meta: dict[str, Any]) -> dict[str, Any]:
    """Train (or resume) a ``RumSundae`` over ``mlm``'s body on (source, target) frames into ``out``: a checkpoint
    while training, then the float16 weights (``save``), the tokenizer, ``learning_curve.csv``; returns the
    training record (``meta`` with steps, time, the last dev scores)."""
    import pandas as pd
    from transformers import AutoTokenizer

    from models import training
    from models.mt import _pad
    from models.training import Budget, Checkpoint, EpochBatches, fresh_state

    torch.set_num_threads(cfg.threads)
    out = Path(out)
    tok = AutoTokenizer.from_pretrained(mlm)
    torch.manual_seed(cfg.seed)
    src_ids = tok(list(train_pairs["source"]), truncation=True, max_length=cfg.max_target)["input_ids"]
    tgt_ids = [ids[: cfg.max_target] for ids in tok(list(train_pairs["target"]), add_special_tokens=False)[
        "input_ids"]]
    outputs = sorted({t for ids in (*src_ids, *tgt_ids) for t in ids}) if cfg.vocabulary == "train" else None
    model = RumSundae(initial_body(mlm, cfg.init), max_target=cfg.max_target, special_ids=tuple(tok.all_special_ids),
                      output_ids=outputs)
    keep = [i for i, t in enumerate(tgt_ids) if t]
    batches = EpochBatches([len(src_ids[i]) + len(tgt_ids[i]) for i in keep], cfg.max_tokens, cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / cfg.warmup_steps, math.sqrt(cfg.warmup_steps / (s + 1))))
    checkpoint = Checkpoint(out, {**meta, "config": asdict(cfg)},
                            {"model": model, "optimizer": opt, "scheduler": sched})
    state = checkpoint.resume() or fresh_state(epoch=0, batch_in_epoch=0)
    dev = dev_pairs.sample(n=min(cfg.eval_sentences, len(dev_pairs)), random_state=cfg.seed)

    def evaluate() -> dict[str, float]:
        bleu, chrf = bleu_chrf(translate(model, tok, list(dev["source"]), cfg), list(dev["target"]))
        model.train()
        return {"dev_bleu": bleu, "dev_chrf": chrf}

    generator = torch.Generator().manual_seed(cfg.seed + state["step"])

    def step(state: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        rows = [keep[i] for i in batches.next(state)]
        src, tgt = _pad([src_ids[i] for i in rows], 0), _pad([tgt_ids[i] for i in rows], 0)
        loss, parts = sundae_loss(model, src, src != 0, tgt, tgt != 0, unroll=cfg.unroll, generator=generator)
        return loss, {"length": f"{parts['length']:.2f}"}

    model.train()
    state = training.run(step, evaluate, state, Budget(cfg.max_steps, cfg.max_minutes, cfg.eval_every,
                                                       cfg.checkpoint_minutes), checkpoint, optimizer=opt,
                         scheduler=sched, params=list(model.parameters()), desc=f"training nar ({cfg.init})")
    record = {**meta, "config": asdict(cfg), "steps": state["step"], "training_seconds": round(state["elapsed"], 1),
              "n_parameters": sum(p.numel() for p in model.parameters()), "final": state["curve"][-1]}
    save(model, tok, out, record)
    pd.DataFrame(state["curve"]).to_csv(out / "learning_curve.csv", index=False)
    return record


def save(model: RumSundae, tok: Any, folder: Path, record: dict[str, Any]) -> None:
    """Float16 weights, the body's config, the tokenizer, ``nar.json`` (the record, ``max_target``, the special
    tokens) and ``output_ids.json``."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().half().contiguous() for k, v in model.state_dict().items()}, folder / WEIGHTS)
    model.config.save_pretrained(folder)
    tok.save_pretrained(folder)
    (folder / SETTINGS).write_text(json.dumps({"max_target": model.max_target, "special_ids": list(model.special_ids),
                                               **record}, indent=2) + "\n")
    (folder / OUTPUTS).write_text(json.dumps(model.output_ids.tolist()) + "\n")


def load(folder: str | Path) -> tuple[RumSundae, Any]:
    """A saved model (float32) and its tokenizer."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, BertConfig

    folder = Path(folder)
    try:
        settings = json.loads((folder / SETTINGS).read_text())
        weights = load_file(folder / WEIGHTS)
        outputs = json.loads((folder / OUTPUTS).read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{folder} holds no RUM-SUNDAE model ({WEIGHTS}, {SETTINGS}): {err}") from err
    model = RumSundae(BertModel(BertConfig.from_pretrained(folder), add_pooling_layer=False),
                      max_target=settings["max_target"], special_ids=tuple(settings["special_ids"]),
                      output_ids=outputs)
    model.load_state_dict({k: v.float() for k, v in weights.items()})
    return model.eval(), AutoTokenizer.from_pretrained(folder)
