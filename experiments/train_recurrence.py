"""``lq train recurrence``: train the recurrence module of a frozen pretrained decoder on long documents, write its
model card.

Documents: the training split of each domain of ``experiments.corpora.DOMAINS`` (Bible books, Shakespeare's
works, Wikipedia articles; document-level splits, so the dev and test documents of ``lq run recurrence`` are never
seen), tokenised whole. Dev: the first ``dev_docs`` dev documents of each domain cut to ``dev_tokens``. The folder
(default ``$LQ_CACHE/models/<base>-recurrence``) is resumable: re-running the same command continues from its
checkpoint; ``max_steps`` and ``max_minutes`` may be raised to train on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.config import check
from experiments.corpora import DOMAINS
from models.recurrence import TrainSettings


@dataclass(frozen=True)
class TrainRecurrenceConfig(TrainSettings):
    base: str = "smollm2-135m-instruct"
    domains: list[str] = field(default_factory=lambda: ["bible", "shakespeare", "wikipedia"])
    window: int = 128  # the model's default window (it is read at any window), and the dev evaluation's
    windows: list[int] = field(default_factory=lambda: [64, 128, 256])
    memory_slots: int = 16
    read_layer: int | None = None
    inject_layers: list[int] | None = None
    dim: int = 256
    heads: int = 4
    dev_docs: int = 2
    dev_tokens: int = 1024
    device: str = "cpu"

    def __post_init__(self) -> None:
        check("train_recurrence", {
            f"domains must be a non-empty list of {', '.join(DOMAINS)}": bool(self.domains)
            and set(self.domains) <= set(DOMAINS),
            "window, k_windows, memory_slots, dim, heads, batch, max_steps, eval_every, dev_docs, dev_tokens "
            "must be >= 1": min(self.window, self.k_windows, self.memory_slots, self.dim, self.heads, self.batch,
                                self.max_steps, self.eval_every, self.dev_docs, self.dev_tokens) >= 1,
            "windows must be a non-empty list of integers >= 1": bool(self.windows) and min(self.windows) >= 1,
            "lr and max_minutes must be > 0": self.lr > 0 and self.max_minutes > 0,
            "weight_decay, warmup_steps, checkpoint_minutes must be >= 0":
                min(self.weight_decay, self.warmup_steps, self.checkpoint_minutes) >= 0,
        })


def tokenised(tok: Any, domain: str, split: str) -> list[tuple[str, list[int]]]:
    """(document id, token ids) of every document of a domain's ``split`` (Bible: one per book)."""
    from experiments.corpora import documents

    return [(doc, list(tok(text)["input_ids"])) for doc, text in documents(domain, split, bible="book")]


def data_hash(docs: list[tuple[str, list[int]]]) -> str:
    h = hashlib.sha256()
    for doc, ids in docs:
        h.update(doc.encode())
        h.update(json.dumps(ids).encode())
    return h.hexdigest()[:16]


def main(cfg: TrainRecurrenceConfig, out: Path | None = None, *, limit: int | None = None,
         argv: list[str] | None = None) -> Path:
    """``limit``: only the first N training documents of each domain (and its first dev document)."""
    from models import cache_dir, load_model
    from models.recurrence import Recurrent, train

    model, tok, info = load_model(cfg.base, device=cfg.device)
    train_docs = [d for domain in cfg.domains for d in tokenised(tok, domain, "train")[:limit]]
    dev_docs = [ids[: cfg.dev_tokens] for domain in cfg.domains
                for _, ids in tokenised(tok, domain, "dev")[: 1 if limit else cfg.dev_docs]]
    out = Path(out) if out else cache_dir() / "models" / f"{cfg.base}-recurrence"
    args = list(argv or sys.argv)
    rec = Recurrent(model, tok, window=cfg.window, memory_slots=cfg.memory_slots, read_layer=cfg.read_layer,
                    inject_layers=cfg.inject_layers, dim=cfg.dim, heads=cfg.heads)
    meta = {"base": cfg.base, "base_source": info.source, "config": dataclasses.asdict(cfg),
            "data_hash": data_hash(train_docs), "n_train_docs": len(train_docs),
            "n_train_tokens": sum(len(ids) for _, ids in train_docs),
            "command": " ".join([Path(args[0]).name, *args[1:]])}
    record = train(rec, [ids for _, ids in train_docs], dev_docs, out, cfg, meta=meta)
    (out / "README.md").write_text(model_card(cfg, record, info.n_parameters))
    print(json.dumps(record["final"], indent=2))
    print(f"recurrence module written to {out}")
    return out


def model_card(cfg: TrainRecurrenceConfig, record: dict[str, Any], base_parameters: int) -> str:
    final = record["final"]
    return f"""# {cfg.base}-recurrence

A recurrence module (Yoshida, Ettinger & Gimpel, 2020) for the frozen `{cfg.base}`
({base_parameters / 1e6:.1f}M parameters, not changed): {record['n_parameters'] / 1e6:.2f}M trained parameters
({100 * record['n_parameters'] / base_parameters:.1f}% of the base), {cfg.memory_slots} memory slots, stored in
float16 (`models/recurrence.py` describes the architecture). Load it with
`models.recurrence.load(folder, model, tokenizer)` over the base model, or by name through `models.load_lm`.

- Command: `{record['command']}`
- Training data: {record['n_train_docs']} training documents of {', '.join(cfg.domains)}
  ({record['n_train_tokens']:,} tokens; sha256[:16] {record['data_hash']})
- Training: {record['steps']} steps of {cfg.batch} x {cfg.k_windows} windows (window drawn from {cfg.windows} per
  step; memory carried along each document), {record['training_seconds'] / 60:.1f} minutes on CPU
- Config: `{json.dumps(dataclasses.asdict(cfg))}`

## Dev NLL per token after the first window (window {cfg.window}; {cfg.dev_docs} dev documents per domain of at most
{cfg.dev_tokens} tokens)

| model | NLL | perplexity |
|---|---|---|
| recurrent | {final['dev_nll']:.4f} | {_ppl(final['dev_nll'])} |
| the base on the same disjoint windows | {final['dev_nll_base']:.4f} | {_ppl(final['dev_nll_base'])} |

The learning curve is in `learning_curve.csv`; `lq run recurrence` evaluates the module on the test documents
against a sliding window, a longer window and the full context.
"""


def _ppl(nll: float) -> str:
    import math

    return f"{math.exp(nll):.2f}"
