"""``lq run contamination``: does a little low-entropy noise in the training data make a trained model's modes
degenerate while leaving its likelihood and beam output almost unchanged? (Yoshida 2024, ch. on degenerate modes;
"MAP's not dead yet", ACL 2024.)

Design: training from scratch per noise rate costs hours here, so every setting continues training the shipped
model for the same ``steps`` on the training split with a fraction eps of targets replaced by the empty string
(``empty``) or by a copy of the source (``copy``); eps = 0 is the control, fine-tuned the same way on clean data,
so differences between settings come from the noise alone. The fine-tuned models are cached under
``$LQ_CACHE/models/contamination/`` (resumable). For ``n`` test sources each model gets beam search, the exact
mode, and the exact mode among non-degenerate outputs (``MinLength(1)`` and ``NotCopyOfSource``); every row also
carries the model's log-probability of the two degenerate outputs (empty, copy) and of the reference (for
perplexity). The closed form (``analysis.theory``) predicts, from the control model alone, which sources' modes
turn degenerate at each eps: the mixture's degenerate output beats the best non-degenerate one when
eps + (1 - eps) P0(D|x) > (1 - eps) m0(x) (``analysis.contamination``). ``toy.parquet`` holds the exact toy
check of the same theory (``experiments.contamination_toy``), drawn as the critical-eps figure.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from decoding import MinLength, NotCopyOfSource, beam_search, exact_search
from experiments.config import ConfigError, check, settings_hash
from experiments.loop import (
    Example,
    Found,
    Method,
    Sources,
    Work,
    execute,
    load_translation_lm,
    pending,
    translation_examples,
)
from experiments.rundir import RunDir

if TYPE_CHECKING:
    from experiments.distributed import RayOptions

NOISES = ("empty", "copy")


@dataclass(frozen=True)
class ContaminationConfig:
    base_model: str = "bible-de-en-marian"
    corpus: str = "bible-de-en"
    split: str = "test"
    kinds: list[str] = field(default_factory=lambda: ["empty", "copy"])
    epsilons: list[float] = field(default_factory=lambda: [0.0, 0.001, 0.01, 0.05])
    steps: int = 150
    lr: float = 1e-4
    warmup_steps: int = 10
    n: int = 20
    max_source_tokens: int = 20
    max_len_ratio: float = 2.0
    max_len: int = 96
    beam_size: int = 5
    max_seconds: float = 5.0
    toy: bool = True
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        check("contamination", {
            f"kinds must be a subset of {NOISES}": bool(self.kinds) and set(self.kinds) <= set(NOISES),
            "epsilons must be in [0, 1)": bool(self.epsilons) and all(0 <= e < 1 for e in self.epsilons),
            "steps must be >= 1": self.steps >= 1,
            "n must be >= 1": self.n >= 1,
            "beam_size must be >= 1": self.beam_size >= 1,
            "max_seconds must be > 0 (exact search on a real model needs a budget)": self.max_seconds > 0,
        })

    def settings(self) -> list[tuple[str, float]]:
        """(noise kind, eps) pairs to train; eps = 0 is one shared control, kind "none"."""
        out = [("none", 0.0)] if 0.0 in self.epsilons else []
        return out + [(kind, eps) for kind in self.kinds for eps in sorted(self.epsilons) if eps > 0]


def _base_folder(name: str) -> Path:
    from models import NAMED_MODELS, ShippedModelSpec
    from models.registry import SHIPPED_DIR

    if isinstance(NAMED_MODELS.get(name), ShippedModelSpec):
        return SHIPPED_DIR / name
    folder = Path(name)
    if not (folder / "training.json").is_file():
        raise ConfigError(f"base_model must be a shipped model or a folder written by `lq train mt`; got {name!r}")
    return folder


def finetune(cfg: ContaminationConfig, kind: str, eps: float, *, limit: int | None = None) -> Path:
    """The base model continued for ``cfg.steps`` on training data contaminated at ``eps`` (cached, resumable)."""
    from experiments.corpora import load_corpus
    from models import cache_dir
    from models.mt import MTConfig, train

    base = _base_folder(cfg.base_model)
    trained = json.loads((base / "training.json").read_text())["config"]
    fields = {f.name for f in dataclasses.fields(MTConfig)}
    mt = MTConfig(**({k: v for k, v in trained.items() if k in fields} | {
        "init_from": str(base.resolve()), "max_steps": cfg.steps, "lr": cfg.lr, "warmup_steps": cfg.warmup_steps,
        "eval_every": cfg.steps, "eval_sentences": 50, "max_minutes": 600.0, "checkpoint_minutes": 5.0,
        "contamination": eps, "contamination_kind": "empty" if kind == "none" else kind, "seed": cfg.seed}))
    corpus = load_corpus(cfg.corpus)
    train_df, dev_df = corpus[corpus["split"] == "train"], corpus[corpus["split"] == "dev"]
    if limit:
        train_df, dev_df = train_df.head(50 * limit), dev_df.head(limit)
    # the folder names the setting and a hash of the whole training config, so a changed lr or seed retrains
    digest = settings_hash(dataclasses.asdict(mt))
    tag = f"{cfg.base_model.replace('/', '_')}-{kind}-{eps:g}-{cfg.steps}steps-{digest}" + (
        f"-limit{limit}" if limit else "")
    out = cache_dir() / "models" / "contamination" / tag
    if not (out / "config.json").is_file():
        train(train_df, dev_df, out, mt, command=" ".join(sys.argv))
    return out


def _logprob(lm: Any, ex: Example, target: list[int]) -> float:
    return float(lm.score(ex.source_ids, [*target, lm.eos_id]).sum())


def _setting_columns(cfg: ContaminationConfig, lm: Any, tok: Any, kind: str,
                     eps: float) -> Callable[[Example, Found], dict[str, Any]]:
    """The columns of a fine-tuned model's rows: its setting, and its log-probabilities of the degenerate outputs
    and of the reference, computed once per source."""
    per_source: dict[str, dict[str, Any]] = {}

    def columns(ex: Example, found: Found) -> dict[str, Any]:
        if ex.example_id not in per_source:
            assert ex.reference is not None
            copy = list(tok(ex.source, add_special_tokens=False)["input_ids"])
            reference = list(tok(ex.reference, add_special_tokens=False)["input_ids"])
            per_source[ex.example_id] = {
                "epsilon": eps, "noise": kind, "steps": cfg.steps, "empty_logprob": _logprob(lm, ex, []),
                "copy_logprob": _logprob(lm, ex, copy), "reference_logprob": _logprob(lm, ex, reference)}
        return per_source[ex.example_id]

    return columns


def methods(cfg: ContaminationConfig, lm: Any) -> list[Method]:
    """Beam search, the exact mode and the exact non-degenerate mode; one row each (rank 0)."""
    nondegenerate = [MinLength(1), NotCopyOfSource()]
    budget = {"budget_s": cfg.max_seconds}
    return [
        Method("beam", {"beam_size": cfg.beam_size}, lambda ex: beam_search(
            lm, ex.source_ids, beam_size=cfg.beam_size, max_len=ex.max_len), keep=1),
        Method("exact", budget, lambda ex: exact_search(
            lm, ex.source_ids, max_len=ex.max_len, max_seconds=cfg.max_seconds), keep=1),
        Method("exact_nondegenerate", budget | {"constraints": "MinLength(1), NotCopyOfSource"},
               lambda ex: exact_search(lm, ex.source_ids, max_len=ex.max_len, max_seconds=cfg.max_seconds,
                                       constraints=nondegenerate), keep=1),
    ]


def _sources(cfg: ContaminationConfig, limit: int | None) -> tuple[Any, list[Example]]:
    """The base model's tokenizer and the test sources."""
    sources = Sources(cfg.corpus, cfg.split, cfg.n, cfg.max_source_tokens, cfg.max_len_ratio, cfg.max_len)
    _, tok, _, prompt = load_translation_lm(str(_base_folder(cfg.base_model)), shots=0, device=cfg.device)
    return tok, translation_examples(sources, tok, prompt, limit)


def _tag(cfg: ContaminationConfig, kind: str, eps: float) -> str:
    return f"{cfg.base_model}+{kind}@{eps:g}"


def setting_work(cfg: ContaminationConfig, kind: str, eps: float, limit: int | None) -> Work:
    """One fine-tuned model's searches (its model from ``finetune``'s cache): built where the searches run (this
    process, or each Ray worker)."""
    tok, chosen = _sources(cfg, limit)
    lm, _, _, _ = load_translation_lm(str(finetune(cfg, kind, eps, limit=limit)), shots=0, device=cfg.device)
    return Work(lm, tok, _tag(cfg, kind, eps), f"{cfg.corpus}/{cfg.split}", chosen, methods(cfg, lm),
                prefix=f"{_tag(cfg, kind, eps)}/", columns=_setting_columns(cfg, lm, tok, kind, eps))


def main(cfg: ContaminationConfig, out_dir: Path, *, limit: int | None = None,
         argv: list[str] | None = None, ray: RayOptions | None = None) -> Path:
    from experiments.report import TOY, finish_run

    with RunDir(out_dir, dataclasses.asdict(cfg) | {"limit": limit}, argv or sys.argv) as run:
        if cfg.toy and not (run.path / TOY).is_file():
            from experiments.contamination_toy import toy_check

            toy_check().to_parquet(run.path / TOY, index=False)
        _, chosen = _sources(cfg, limit)
        settings = cfg.settings()
        for i, (kind, eps) in enumerate(settings):
            model_tag = _tag(cfg, kind, eps)
            if not pending(run, chosen, methods(cfg, None), prefix=f"{model_tag}/"):
                continue
            print(f"[{i + 1}/{len(settings)}] {model_tag}: fine-tuning {cfg.steps} steps (cached once done)",
                  file=sys.stderr)
            finetune(cfg, kind, eps, limit=limit)  # here, once: the work (and every Ray worker) loads it cached
            execute(run, partial(setting_work, cfg, kind, eps, limit), ray=ray)
        return finish_run(run.path)
