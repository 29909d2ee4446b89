"""``lq train mt``: train the Marian translation model on a parallel corpus, evaluate it, write its model card.

The model folder (default ``$LQ_CACHE/models/<corpus>-marian``) is resumable: re-running the same command
continues from its checkpoint. After training, greedy and beam-5 translations of the dev and test splits are
scored with sacrebleu and recorded in ``README.md`` (the model card) with the data hash, the command and the
training time.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from models.errors import ConfigError
from models.mt import MTConfig, bleu_chrf, translate

# T5-style task prefixes of multi-task training (``tasks``), by corpus
TASK_PREFIXES = {"bible-de-en": "translate German to English: ", "bible-kjv-bbe": "simplify: "}


@dataclass(frozen=True)
class TrainMTConfig(MTConfig):
    corpus: str = "bible-de-en"
    tasks: list[str] = field(default_factory=list)  # several corpora mixed in every minibatch, each source prefixed
    lowercase: bool = False  # train and evaluate on lowercased text (to match an uncased model's vocabulary)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.tasks and (len(set(self.tasks)) < 2 or not set(self.tasks) <= set(TASK_PREFIXES)):
            raise ConfigError(f"tasks must be two or more of {', '.join(TASK_PREFIXES)}, got {self.tasks}")

    def model_config(self) -> MTConfig:
        return MTConfig(**{f.name: getattr(self, f.name) for f in fields(MTConfig)})


def main(cfg: TrainMTConfig, out: Path | None = None, *, limit: int | None = None,
         argv: list[str] | None = None) -> Path:
    import pandas as pd
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    from experiments.corpora import load_corpus
    from models import cache_dir
    from models.mt import train

    frames = []
    for task in cfg.tasks or [cfg.corpus]:
        df = load_corpus(task).assign(task=task)
        if cfg.lowercase:
            df = df.assign(source=df["source"].str.lower(), target=df["target"].str.lower())
        if cfg.tasks:
            df["source"] = TASK_PREFIXES[task] + df["source"]
        frames.append({s: df[df["split"] == s] for s in ("train", "dev", "test")})
    if limit:
        frames = [{s: d.head(limit if s == "train" else max(1, limit // 10)) for s, d in f.items()} for f in frames]
    # minibatches are buckets of similar length drawn from all tasks at once (models.training.EpochBatches), so they mix
    splits = {s: pd.concat([f[s] for f in frames], ignore_index=True) for s in ("train", "dev", "test")}
    name = "+".join(cfg.tasks) if cfg.tasks else cfg.corpus
    out = Path(out) if out else cache_dir() / "models" / f"{name}{'-lc' if cfg.lowercase else ''}-{cfg.arch}"
    args = list(argv or sys.argv)
    command = " ".join([Path(args[0]).name, *args[1:]])
    train(splits["train"], splits["dev"], out, cfg.model_config(), command=command)
    auto = AutoModelForSeq2SeqLM if cfg.arch == "marian" else AutoModelForCausalLM
    model = auto.from_pretrained(out).float()
    tok = AutoTokenizer.from_pretrained(out)
    if cfg.tasks or cfg.lowercase:  # load_translation_lm reads them
        if cfg.tasks:
            model.config.lq_task_prefixes = {t: TASK_PREFIXES[t] for t in cfg.tasks}
        model.config.lq_lowercase = cfg.lowercase
        model.config.save_pretrained(out)
    scores: dict[str, Any] = {}
    for split in ("dev", "test"):
        for task, d in splits[split].groupby("task", sort=False):
            for decoding, beams in (("greedy", 1), ("beam5", 5)):
                t0 = time.perf_counter()
                hyps = translate(model, tok, list(d["source"]), num_beams=beams)
                bleu, chrf = bleu_chrf(hyps, list(d["target"]))
                key = f"{split}/{task}/{decoding}" if cfg.tasks else f"{split}/{decoding}"
                scores[key] = {"bleu": round(bleu, 2), "chrf": round(chrf, 2), "n": len(d),
                               "seconds": round(time.perf_counter() - t0, 1)}
    meta = json.loads((out / "training.json").read_text())
    meta["evaluation"] = scores
    (out / "training.json").write_text(json.dumps(meta, indent=2))
    (out / "README.md").write_text(model_card(cfg, meta, model))
    print(json.dumps(scores, indent=2))
    print(f"model written to {out}")
    return out


def model_card(cfg: TrainMTConfig, meta: dict[str, Any], model: Any) -> str:
    n_params = sum(p.numel() for p in model.parameters())
    rows = "\n".join(f"| {k} | {v['bleu']:.2f} | {v['chrf']:.2f} | {v['n']} |" for k, v in meta["evaluation"].items())
    what = (f"A `MarianMTModel` ({n_params / 1e6:.1f}M parameters, {cfg.layers}+{cfg.layers} layers" if cfg.arch ==
            "marian" else f"A decoder-only `LlamaForCausalLM` ({n_params / 1e6:.1f}M parameters, {2 * cfg.layers} "
            "layers, input: the source's tokens, </s>, then the target's; loss on the target only")
    name = "+".join(cfg.tasks) if cfg.tasks else cfg.corpus
    tasks = ("\nTasks, mixed in every minibatch, each source prefixed: " + ", ".join(
        f"`{t}` ({TASK_PREFIXES[t]!r})" for t in cfg.tasks) + ".\n") if cfg.tasks else ""
    lower = "\nSources and targets are lowercased (training and evaluation alike).\n" if cfg.lowercase else ""
    return f"""# {name}{'-lc' if cfg.lowercase else ''}-{cfg.arch}

{what}, d_model {cfg.d_model}, shared {cfg.vocab_size} BPE vocabulary) trained from scratch on the training split of
`{name}` by the likelihood-quality toolkit. Weights are stored in float16.{tasks}{lower}

- Command: `{meta['command']}`
- Training data: {meta['n_train']} pairs, sha256[:16] {meta['data_hash']}; contaminated targets:
  {meta['n_contaminated']} ({cfg.contamination_kind}, rate {cfg.contamination})
- Training: {meta['steps']} steps, {meta['epochs']:.2f} epochs, {meta.get('target_tokens') or 0:,} target tokens,
  {meta['training_seconds'] / 60:.1f} minutes on CPU
- Config: `{json.dumps(asdict(cfg))}`

## Evaluation (sacrebleu {_sacrebleu_version()}, default BLEU and chrF signatures)

| split/decoding | BLEU | chrF | sentences |
|---|---|---|---|
{rows}

The learning curve (dev loss, BLEU and chrF on {cfg.eval_sentences} dev sentences) is in `learning_curve.csv`.
"""


def _sacrebleu_version() -> str:
    import sacrebleu

    return str(sacrebleu.__version__)
