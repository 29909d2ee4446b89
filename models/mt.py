"""Train a Marian-architecture translation model from scratch on CPU, saved as a normal HF folder.

The result loads with ``AutoModelForSeq2SeqLM`` / ``AutoTokenizer`` like any OPUS-MT model: a
``MarianMTModel`` and a shared BPE ``PreTrainedTokenizerFast`` trained with ``tokenizers`` on the training split
(source ids end in ``</s>``; ``<pad>`` is also the decoder start token, as in OPUS-MT).

Training: token-bucketed batches, AdamW with linear warm-up and inverse-square-root decay, label-smoothed
cross-entropy, for ``max_steps`` updates (reproducible), stopped early at ``max_minutes`` of wall time. It
checkpoints every few minutes (model, optimiser, step, epoch order) and resumes from the checkpoint when run
again with the same output folder. ``contamination`` replaces a fraction of training targets by the empty
string or by a copy of the source, for the theory of degenerate modes; with ``init_from`` (a model folder, e.g.
the shipped model) training continues from that model and its tokenizer instead of starting from scratch, which is
how the contamination experiment fine-tunes one model on differently contaminated data.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models import training
from models.training import Budget, Checkpoint, EpochBatches, fresh_state

if TYPE_CHECKING:
    import pandas as pd
    import torch
    from transformers import PreTrainedTokenizerFast

SPECIALS = ("<pad>", "</s>", "<unk>")  # ids 0, 1, 2
ARCHS = ("marian", "decoder-only")
# what a decoder-only translation model's config says about its input: the source's ids (which end in </s>, the
# separator) then the target's, so its prompt is the tokenised source
DECODER_ONLY_FORMAT = "source </s> target </s>"


@dataclass(frozen=True)
class MTConfig:
    vocab_size: int = 8000
    d_model: int = 256
    layers: int = 3
    heads: int = 4
    ffn_dim: int = 1024
    dropout: float = 0.1
    max_tokens: int = 3000
    max_len: int = 128
    lr: float = 7e-4
    warmup_steps: int = 1000
    label_smoothing: float = 0.1
    max_steps: int = 3000
    max_minutes: float = 180.0
    max_epochs: int = 40
    eval_every: int = 1000
    eval_sentences: int = 200
    checkpoint_minutes: float = 10.0
    contamination: float = 0.0
    contamination_kind: str = "empty"
    seed: int = 0
    threads: int = 2
    init_from: str | None = None
    arch: str = "marian"
    max_target_tokens: int = 0  # > 0: stop once the training targets seen reach this (compare architectures by it)

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        if not 0 <= self.contamination < 1:
            raise ValueError(f"contamination must be in [0, 1), got {self.contamination}")
        if self.contamination_kind not in ("empty", "copy"):
            raise ValueError(f"contamination_kind must be 'empty' or 'copy', got {self.contamination_kind!r}")
        if self.d_model % self.heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by heads ({self.heads})")
        for name in ("vocab_size", "d_model", "layers", "max_tokens", "max_len", "max_steps", "max_epochs",
                     "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def contaminate(train: pd.DataFrame, rate: float, kind: str, seed: int) -> pd.DataFrame:
    """A copy of ``train`` whose target is replaced, for exactly round(rate * n) rows chosen by ``seed``, by
    the empty string (``kind="empty"``) or the source (``"copy"``); column ``contaminated`` marks them."""
    out = train.copy()
    n = round(rate * len(out))
    rows = random.Random(seed).sample(range(len(out)), n)
    out["contaminated"] = False
    idx = out.index[rows]
    out.loc[idx, "target"] = "" if kind == "empty" else out.loc[idx, "source"]
    out.loc[idx, "contaminated"] = True
    return out


def train_tokenizer(texts: Sequence[str], vocab_size: int) -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS),
                                                       show_progress=False))
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=512)


def _initial_model(cfg: MTConfig, vocab_size: int) -> Any:
    """A fresh model from ``cfg``, or the float32 weights of ``cfg.init_from``."""
    if not cfg.init_from:
        return build_model(cfg, vocab_size)
    import torch
    from transformers import AutoModelForCausalLM, MarianMTModel

    cls = MarianMTModel if cfg.arch == "marian" else AutoModelForCausalLM
    return cls.from_pretrained(cfg.init_from, dtype=torch.float32)


def build_model(cfg: MTConfig, vocab_size: int) -> Any:
    """A ``MarianMTModel`` (``layers`` + ``layers``), or for ``arch="decoder-only"`` a ``LlamaForCausalLM`` of
    ``2 * layers`` layers of the same width, heads and feed-forward size with tied embeddings: its SwiGLU
    feed-forward has a third matrix where the encoder-decoder has cross-attention, so the two count within 10%
    of each other's parameters (8.3M and 7.8M at the defaults)."""
    from transformers import LlamaConfig, LlamaForCausalLM, MarianConfig, MarianMTModel

    if cfg.arch == "decoder-only":
        causal = LlamaConfig(
            vocab_size=vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.ffn_dim,
            num_hidden_layers=2 * cfg.layers, num_attention_heads=cfg.heads, num_key_value_heads=cfg.heads,
            max_position_embeddings=2 * cfg.max_len + 2, attention_dropout=cfg.dropout, tie_word_embeddings=True,
            pad_token_id=0, bos_token_id=1, eos_token_id=1)
        causal.lq_input_format = DECODER_ONLY_FORMAT  # saved in config.json: how load_translation_lm prompts it
        return LlamaForCausalLM(causal)
    config = MarianConfig(
        vocab_size=vocab_size, d_model=cfg.d_model, encoder_layers=cfg.layers, decoder_layers=cfg.layers,
        encoder_attention_heads=cfg.heads, decoder_attention_heads=cfg.heads, encoder_ffn_dim=cfg.ffn_dim,
        decoder_ffn_dim=cfg.ffn_dim, dropout=cfg.dropout, attention_dropout=cfg.dropout,
        max_position_embeddings=512, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
        forced_eos_token_id=1, share_encoder_decoder_embeddings=True, scale_embedding=True)
    return MarianMTModel(config)


def _pad(seqs: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    import torch

    out = torch.full((len(seqs), max(len(s) for s in seqs)), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out


def _loss(model: Any, arch: str, src: Sequence[Sequence[int]], tgt: Sequence[Sequence[int]],
          smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy of the target tokens (label-smoothed by ``smoothing``): Marian reads the source with its
    encoder; a decoder-only model reads source then target (``DECODER_ONLY_FORMAT``), the loss on the target's
    tokens (its closing </s> included) only."""
    import torch
    from transformers.models.marian.modeling_marian import shift_tokens_right

    if arch == "marian":
        inp, labels = _pad(src, 0), _pad(tgt, -100)
        logits = model(input_ids=inp, attention_mask=(inp != 0).long(),
                       decoder_input_ids=shift_tokens_right(labels, 0, 0)).logits
    else:
        pairs = list(zip(src, tgt, strict=True))
        inp = _pad([[*s, *t] for s, t in pairs], 0)
        mask = _pad([[1] * (len(s) + len(t)) for s, t in pairs], 0)
        logits = model(input_ids=inp, attention_mask=mask).logits[:, :-1]
        labels = _pad([[-100] * len(s) + list(t) for s, t in pairs], -100)[:, 1:]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                             ignore_index=-100, label_smoothing=smoothing)


def translate(model: Any, tok: Any, sources: Sequence[str], *, batch_size: int = 32, num_beams: int = 1,
              max_new_tokens: int = 160) -> list[str]:
    """Batched greedy (or beam) translations with HF ``generate``, for quick evaluation of training; a
    decoder-only model continues its left-padded tokenised sources."""
    import torch

    model.eval()
    causal = not model.config.is_encoder_decoder
    out: list[str] = []
    with torch.inference_mode():
        for i in range(0, len(sources), batch_size):
            enc = tok(list(sources[i:i + batch_size]), return_tensors="pt", padding=True, truncation=True,
                      padding_side="left" if causal else "right")
            gen = model.generate(**enc, do_sample=False, num_beams=num_beams, max_new_tokens=max_new_tokens,
                                 eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
            if causal:
                gen = gen[:, enc["input_ids"].shape[1]:]
            out.extend(tok.batch_decode(gen, skip_special_tokens=True))
    return out


def bleu_chrf(hyps: Sequence[str], refs: Sequence[str]) -> tuple[float, float]:
    import sacrebleu

    return (sacrebleu.corpus_bleu(list(hyps), [list(refs)]).score,
            sacrebleu.corpus_chrf(list(hyps), [list(refs)]).score)


def data_hash(df: pd.DataFrame) -> str:
    h = hashlib.sha256()
    for row in df[["id", "source", "target"]].itertuples(index=False):
        h.update("\t".join(map(str, row)).encode() + b"\n")
    return h.hexdigest()[:16]


def train(train_df: pd.DataFrame, dev_df: pd.DataFrame, out: Path, cfg: MTConfig, *, command: str = "") -> Path:
    """Train (or resume) into ``out``: ``out/checkpoint`` while training, then the final fp16 HF folder with
    ``README.md`` (model card), ``learning_curve.csv`` and ``training.json``. Returns ``out``."""
    import torch
    from transformers import AutoTokenizer

    torch.set_num_threads(cfg.threads)
    out = Path(out)
    data = contaminate(train_df, cfg.contamination, cfg.contamination_kind, cfg.seed) if cfg.contamination \
        else train_df.assign(contaminated=False)
    meta: dict[str, Any] = {"config": asdict(cfg), "data_hash": data_hash(data), "command": command,
                            "n_train": len(data), "n_contaminated": int(data["contaminated"].sum())}
    if (out / "checkpoint" / training.STATE_FILE).is_file():  # the tokenizer trained when the run started
        tok = AutoTokenizer.from_pretrained(out / "checkpoint")
    else:
        tok = AutoTokenizer.from_pretrained(cfg.init_from) if cfg.init_from else train_tokenizer(
            list(data["source"]) + list(data["target"]), cfg.vocab_size)
    torch.manual_seed(cfg.seed)
    model = _initial_model(cfg, len(tok))
    src_ids = tok(list(data["source"]), truncation=True, max_length=cfg.max_len)["input_ids"]
    tgt_ids = tok(list(data["target"]), truncation=True, max_length=cfg.max_len)["input_ids"]
    batches = EpochBatches([max(len(s), len(t)) if cfg.arch == "marian" else len(s) + len(t)
                            for s, t in zip(src_ids, tgt_ids, strict=True)], cfg.max_tokens, cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / cfg.warmup_steps, math.sqrt(cfg.warmup_steps / (s + 1))))
    checkpoint = Checkpoint(out, meta, {"model": model, "optimizer": opt, "scheduler": sched},
                            files=tok.save_pretrained)
    state = checkpoint.resume(defaults=asdict(MTConfig())) or fresh_state(epoch=0, batch_in_epoch=0,
                                                                           target_tokens=0)
    dev = dev_df.sample(n=min(cfg.eval_sentences, len(dev_df)), random_state=cfg.seed)

    def evaluate() -> dict[str, float]:
        model.eval()
        with torch.inference_mode():
            loss = float(_loss(model, cfg.arch, *(tok(list(dev[c]), truncation=True, max_length=cfg.max_len)[
                "input_ids"] for c in ("source", "target"))))
        bleu, chrf = bleu_chrf(translate(model, tok, list(dev["source"])), list(dev["target"]))
        model.train()
        return {"dev_loss": loss, "dev_bleu": bleu, "dev_chrf": chrf}

    def step(state: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        b = batches.next(state)
        state["target_tokens"] += sum(len(tgt_ids[i]) for i in b)
        return (_loss(model, cfg.arch, [src_ids[i] for i in b], [tgt_ids[i] for i in b], cfg.label_smoothing),
                {"epoch": state["epoch"]})

    def stop(state: dict[str, Any]) -> bool:
        return batches.epochs(state) >= cfg.max_epochs or 0 < cfg.max_target_tokens <= state["target_tokens"]

    model.train()
    state = training.run(step, evaluate, state, Budget(cfg.max_steps, cfg.max_minutes, cfg.eval_every,
                                                       cfg.checkpoint_minutes), checkpoint,
                         optimizer=opt, scheduler=sched, params=list(model.parameters()), desc="training", stop=stop)
    meta |= {"training_seconds": round(state["elapsed"], 1), "steps": state["step"],
             "target_tokens": state["target_tokens"], "epochs": batches.epochs(state),
             "final_eval": {k: v for k, v in state["curve"][-1].items() if k.startswith("dev_")}}
    _save_final(model, tok, out, meta, state["curve"])
    return out


def _save_final(model: Any, tok: Any, out: Path, meta: dict[str, Any],
                curve: list[dict[str, Any]]) -> None:
    import pandas as pd

    model.half().save_pretrained(out, safe_serialization=True)
    model.float()
    tok.save_pretrained(out)
    pd.DataFrame(curve).to_csv(out / "learning_curve.csv", index=False)
    (out / "training.json").write_text(json.dumps(meta, indent=2))
