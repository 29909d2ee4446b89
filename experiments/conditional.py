"""``lq run conditional``: conditional beam search on p(y | x, A) against beam search and its hard-constraint
variants, and against the exact conditional mode (Yoshida et al. 2024, "MAP's not dead yet", ACBS).

A is "not degenerate, and of a plausible length": ``NotDegenerate() & LengthRatio(lo, hi)`` for a translation
model (``length_ratio``: by default the central 90% of the shipped model's own sample length ratios on training
verses, 0.75-1.25), and ``NotDegenerate(on text, against the user's message) & LengthRange(chat_min_tokens,
chat_max_len - 1)`` for a chat model: a complete answer of some substance that does not repeat the question (its
exact modes are empty, copies of the question or short non-answers; its beams run past any length budget).

For each model a classifier q(A | x, y<=t) is trained on the model's own ancestral samples for training-split
sources (``models.classifier``; cached under ``$LQ_CACHE/classifiers/``, also ``lq train classifier``), and its
held-out calibration is written to ``calibration.parquet``. Then for ``n`` test sources (translation: Bible verses;
chat: the questions of chatterbot-corpus, in its chat template) and each beam size k:

- ``beam<k>``: beam search; ``beam_nonempty<k>``: with ``MinLength(1)`` (only empty outputs removed: the
  ablation "is the gain more than removing empty outputs?");
- ``beam_min_len<k>`` / ``beam_truncated<k>``: with a minimum length / EOS forced at a target length, A's
  shortest and longest allowed lengths;
- ``beam_filtered<k>``: finished outputs must have A (the exact indicator at EOS, no classifier: the ablation of
  the classifier);
- ``conditional_beam<k>``: the indicator at EOS plus the learned classifier on every prefix;

and, under a time budget, ``exact`` (the unconditional mode) and ``exact_conditional`` (``exact_search`` with A as
constraint, and the lengths A allows: the exact conditional mode). One row per (model, source, method), rank 0.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from decoding import (
    Attribute,
    Constraint,
    LengthRange,
    LengthRatio,
    MinLength,
    NotDegenerate,
    SearchResult,
    beam_search,
    conditional_beam_search,
    exact_search,
)
from decoding.attributes import source_content
from experiments.config import ConfigError, check, settings_hash
from experiments.loop import Example, Found, Method, Sources, Work, chat_examples, execute, translation_examples
from experiments.rundir import RunDir

if TYPE_CHECKING:
    from experiments.distributed import RayOptions


@dataclass(frozen=True)
class ConditionalConfig:
    models: list[str] = field(default_factory=lambda: ["bible-de-en-marian", "smollm2-135m-instruct"])
    corpus: str = "bible-de-en"
    chat_corpus: str = "chatterbot"
    split: str = "test"
    n: int = 30
    chat_n: int = 20
    max_source_tokens: int = 48
    max_len_ratio: float = 2.0
    max_len: int = 128
    chat_max_len: int = 48
    length_ratio: list[float] = field(default_factory=lambda: [0.75, 1.25])
    chat_min_tokens: int = 8
    beam_sizes: list[int] = field(default_factory=lambda: [5, 50, 200])
    chat_beam_sizes: list[int] = field(default_factory=lambda: [5, 20])
    candidates: int | None = 50
    max_seconds: float = 5.0
    train_sources: int = 400
    chat_train_sources: int = 60
    train_samples: int = 16
    epochs: int = 20
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        check("conditional", {
            "models must not be empty": bool(self.models),
            "n and chat_n must be >= 1": self.n >= 1 and self.chat_n >= 1,
            "length_ratio must be [lo, hi] with 0 <= lo <= hi": len(self.length_ratio) == 2
            and 0 <= self.length_ratio[0] <= self.length_ratio[1],
            "chat_min_tokens must be in [0, chat_max_len)": 0 <= self.chat_min_tokens < self.chat_max_len,
            "beam sizes must be positive integers": bool(self.beam_sizes) and bool(self.chat_beam_sizes)
            and all(k >= 1 for k in [*self.beam_sizes, *self.chat_beam_sizes]),
            "candidates must be >= 1 or None": self.candidates is None or self.candidates >= 1,
            "max_seconds must be > 0 (exact search on a real model needs a budget)": self.max_seconds > 0,
            "train_sources, chat_train_sources, train_samples and epochs must be >= 1": min(
                self.train_sources, self.chat_train_sources, self.train_samples, self.epochs) >= 1,
            "split must be dev or test (the classifier trains on train)": self.split in ("dev", "test"),
        })


@dataclass
class Task:
    """One model with its attribute, its test examples and its classifier's training sources."""

    model: str
    lm: Any
    tok: Any
    attribute: Attribute
    dataset: str
    examples: list[Example]
    train_ids: list[list[int]]
    train_max_len: int
    beam_sizes: list[int]


def load_task(cfg: ConditionalConfig, model: str, limit: int | None) -> Task:
    """A translation task for an encoder-decoder model, a chat task for a decoder-only one."""
    from models import load_lm

    lm, tok, info = load_lm(model, device=cfg.device)
    if info.is_encoder_decoder:
        def sources(split: str, n: int) -> Sources:
            return Sources(cfg.corpus, split, n, cfg.max_source_tokens, cfg.max_len_ratio, cfg.max_len)

        def direct(source: str, demos: Any) -> str:
            return source

        test = translation_examples(sources(cfg.split, cfg.n), tok, direct, limit)
        train = translation_examples(sources("train", cfg.train_sources), tok, direct, limit and 4 * limit)
        return Task(model, lm, tok, NotDegenerate() & LengthRatio(*cfg.length_ratio), f"{cfg.corpus}/{cfg.split}",
                    test, [ex.source_ids for ex in train], max(ex.max_len for ex in train), cfg.beam_sizes)
    if not getattr(tok, "chat_template", None):
        raise ConfigError(f"{model} has no chat template; the conditional experiment's chat task needs an "
                         "instruction-tuned model (or give an encoder-decoder translation model)")
    test = chat_examples(cfg.chat_corpus, cfg.split, min(cfg.chat_n, limit or cfg.chat_n), tok, cfg.chat_max_len)
    train = chat_examples(cfg.chat_corpus, "train", limit and 4 * limit or cfg.chat_train_sources, tok,
                          cfg.chat_max_len)
    from models.chat import user_message

    not_degenerate = NotDegenerate(detokenize=lambda ids: str(tok.decode(list(ids), skip_special_tokens=True)),
                                   source_text=user_message(tok))
    attribute = not_degenerate & LengthRange(cfg.chat_min_tokens, cfg.chat_max_len - 1)
    return Task(model, lm, tok, attribute, f"{cfg.chat_corpus}/{cfg.split}", test, [ex.source_ids for ex in train],
                cfg.chat_max_len, cfg.chat_beam_sizes)


def classifier_settings(cfg: ConditionalConfig, task: Task) -> dict[str, Any]:
    """What a trained classifier depends on; its hash names the cached classifier."""
    return {"model": task.model, "attribute": task.attribute.name, "sources": len(task.train_ids),
            "samples": cfg.train_samples, "max_len": task.train_max_len, "epochs": cfg.epochs, "seed": cfg.seed}


def train_or_load_classifier(cfg: ConditionalConfig, task: Task) -> tuple[Any, Path]:
    """The task's classifier from the cache, trained first if it is not there (samples, training, calibration)."""
    from models.classifier import classifier_folder, collect, load_classifier, save_classifier, train_classifier

    settings = classifier_settings(cfg, task)
    digest = settings_hash(settings)
    folder = classifier_folder(task.model, task.attribute) / digest
    if not (folder / "config.json").is_file():
        print(f"{task.model}: training the classifier of {task.attribute.name} on {cfg.train_samples} samples of "
              f"{len(task.train_ids)} training sources (cached in {folder})", file=sys.stderr)
        data = collect(task.lm, task.train_ids, task.attribute, n_samples=cfg.train_samples,
                       max_len=task.train_max_len, seed=cfg.seed)
        clf, metrics = train_classifier(data, task.attribute, epochs=cfg.epochs, seed=cfg.seed)
        save_classifier(clf, folder, metrics)
        (folder / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    return load_classifier(folder, task.attribute, device=cfg.device), folder


def train_classifiers(cfg: ConditionalConfig, *, limit: int | None = None) -> list[Path]:
    """``lq train classifier``: the classifier of each model in ``cfg.models``, trained unless cached; prints each
    one's held-out metrics. Returns their folders."""
    folders = []
    for model in cfg.models:
        task = load_task(cfg, model, limit)
        _, folder = train_or_load_classifier(cfg, task)
        metrics = json.loads((folder / "config.json").read_text())["metrics"]
        print(f"{model}: q({task.attribute.name} | x, y<=t) held-out loss {metrics['loss']:.4f}, accuracy "
              f"{metrics['accuracy']:.3f}, ECE {metrics['ece']:.4f} ({metrics['n_train']} training and "
              f"{metrics['n_held_out']} held-out prefixes; best epoch {metrics['best_epoch']})\n  {folder}")
        folders.append(folder)
    return folders


def calibration_rows(task: Task, folder: Path) -> pd.DataFrame:
    """The classifier's held-out reliability and accuracy-by-position tables, tidy, for ``calibration.parquet``."""
    metrics = json.loads((folder / "config.json").read_text())["metrics"]
    common = {"model": task.model, "attribute": task.attribute.name, "ece": metrics["ece"],
              "held_out_accuracy": metrics["accuracy"], "held_out_loss": metrics["loss"]}
    parts = [pd.read_csv(folder / f"{table}.csv").assign(table=table, **common)
             for table in ("reliability", "by_position")]
    return pd.concat(parts, ignore_index=True)


def methods(cfg: ConditionalConfig, task: Task, classifier: Any) -> list[Method]:
    """Per beam size the beam families, then the exact searches; one row each (rank 0)."""
    a, lm = task.attribute, task.lm

    def bounds(ex: Example) -> tuple[int, int]:
        lo, hi = a.length_range(source_content(ex.source_ids, lm.eos_id)) or (0, ex.max_len)
        return lo, min(hi, ex.max_len)

    def beam(ex: Example, k: int, constraints: Sequence[Constraint] = ()) -> SearchResult:
        return beam_search(lm, ex.source_ids, beam_size=k, max_len=ex.max_len, constraints=constraints)

    def beam_min_len(ex: Example, k: int) -> SearchResult:
        return beam_search(lm, ex.source_ids, beam_size=k, max_len=ex.max_len, min_len=min(bounds(ex)[0], ex.max_len))

    def beam_truncated(ex: Example, k: int) -> SearchResult:
        return beam_search(lm, ex.source_ids, beam_size=k, max_len=max(bounds(ex)[1], 1))

    def conditional(ex: Example, k: int) -> SearchResult:
        return conditional_beam_search(lm, ex.source_ids, attribute=a, classifier=classifier, beam_size=k,
                                       max_len=ex.max_len, candidates=cfg.candidates)

    def exact(ex: Example) -> SearchResult:
        return exact_search(lm, ex.source_ids, max_len=ex.max_len, max_seconds=cfg.max_seconds)

    def exact_conditional(ex: Example) -> SearchResult:
        lo, hi = bounds(ex)
        # the lengths A allows prune the search; the result is the same as with A alone
        return exact_search(lm, ex.source_ids, max_len=hi, constraints=[MinLength(lo), a], max_seconds=cfg.max_seconds)

    out: list[Method] = []
    for k in task.beam_sizes:
        size = {"beam_size": k}
        out += [
            Method("beam", size, partial(beam, k=k), keep=1),
            Method("beam_nonempty", size, partial(beam, k=k, constraints=[MinLength(1)]), keep=1),
            Method("beam_min_len", size, partial(beam_min_len, k=k), keep=1),
            Method("beam_truncated", size, partial(beam_truncated, k=k), keep=1),
            Method("beam_filtered", size, partial(beam, k=k, constraints=[a]), keep=1),
            Method("conditional_beam", size | {"candidates": cfg.candidates}, partial(conditional, k=k), keep=1)]
    budget = {"budget_s": cfg.max_seconds}
    return [*out, Method("exact", budget, exact, keep=1),
            Method("exact_conditional", budget, exact_conditional, keep=1)]


def _work(cfg: ConditionalConfig, task: Task, classifier: Any) -> Work:
    def holds(ex: Example, found: Found) -> dict[str, Any]:
        """Whether the output has A (missing without output)."""
        h = found.hypothesis
        content = source_content(ex.source_ids, task.lm.eos_id)
        return {"attribute": task.attribute.name,
                "attribute_holds": None if h is None else task.attribute(h.token_ids[:h.length], content)}

    return Work(task.lm, task.tok, task.model, task.dataset, task.examples, methods(cfg, task, classifier),
                prefix=f"{task.model}/", columns=holds)


def task_work(cfg: ConditionalConfig, model: str, limit: int | None) -> Work:
    """One model's searches, its classifier from the cache: built in each Ray worker."""
    task = load_task(cfg, model, limit)
    return _work(cfg, task, train_or_load_classifier(cfg, task)[0])


def main(cfg: ConditionalConfig, out_dir: Path, *, limit: int | None = None, argv: list[str] | None = None,
         ray: RayOptions | None = None) -> Path:
    with RunDir(out_dir, dataclasses.asdict(cfg) | {"limit": limit}, argv or sys.argv) as run:
        calibration = []
        for i, model in enumerate(cfg.models):
            print(f"[{i + 1}/{len(cfg.models)}] {model}", file=sys.stderr)
            task = load_task(cfg, model, limit)
            classifier, folder = train_or_load_classifier(cfg, task)  # here, once: Ray workers load it cached
            calibration.append(calibration_rows(task, folder))
            execute(run, partial(task_work, cfg, model, limit), ray=ray, work=_work(cfg, task, classifier))
        from experiments.report import CALIBRATION, finish_run

        pd.concat(calibration, ignore_index=True).to_parquet(run.path / CALIBRATION, index=False)
        return finish_run(run.path)
