"""``lq run hso-perplexity``: streaming perplexity of pretrained decoders with no adaptation, hidden-state
optimisation (HSO) and dynamic evaluation, on held-out text of several domains (DESIGN.md §8).

Each domain is a list of documents (``DOMAINS``), tokenised and cut into chunks of at most ``chunk_tokens``
tokens; every method reads each chunk from scratch in segments of ``segment`` tokens over a window of ``window``
cached tokens, and each segment is scored before the method adapts to it. The settings of HSO (``hso_lr`` x
``hso_steps``) and of dynamic evaluation (``dyn_lr``) are tuned per model and domain on ``dev_tokens`` of the dev
split; the best of each is run on ``test_tokens`` of evaluation text with the baseline. Evaluation text is the
test split, then training documents: nothing here trains on them and the models were pretrained elsewhere, so
only the dev split, used for tuning, must be kept apart. One row per (chunk, setting, segment); each chunk is
one unit of the run directory, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from analysis.perplexity import best_settings, perplexity_table, setting_name
from experiments.config import check
from experiments.corpora import DOMAINS, documents
from experiments.rundir import RunDir


@dataclass(frozen=True)
class HSOPerplexityConfig:
    models: list[str] = field(default_factory=lambda: ["smollm2-135m-instruct", "gemma3-270m"])
    domains: list[str] = field(default_factory=lambda: ["bible", "shakespeare", "wikipedia"])
    test_tokens: int = 20_000
    model_test_tokens: dict[str, int] = field(default_factory=dict)
    dev_tokens: int = 2_048
    chunk_tokens: int = 1_024
    segment: int = 32
    window: int = 480
    hso_lr: list[float] = field(default_factory=lambda: [1e-3, 3e-3, 1e-2])
    hso_steps: list[int] = field(default_factory=lambda: [1, 3])
    dyn_lr: list[float] = field(default_factory=lambda: [1e-5, 3e-5, 1e-4])
    dyn_decay: float = 0.0
    dyn_params: str = "all"
    device: str = "cpu"

    def __post_init__(self) -> None:
        check("hso-perplexity", {
            "models must be a non-empty list": bool(self.models),
            f"domains must be a non-empty list of {', '.join(DOMAINS)}": bool(self.domains)
            and set(self.domains) <= set(DOMAINS),
            "test_tokens, dev_tokens, model_test_tokens values must be >= 2":
                min([self.test_tokens, self.dev_tokens, *self.model_test_tokens.values()]) >= 2,
            "chunk_tokens must be > segment": self.chunk_tokens > self.segment >= 1,
            "window must be >= 1": self.window >= 1,
            "hso_lr, dyn_lr must be non-empty lists of numbers > 0": bool(self.hso_lr) and bool(self.dyn_lr)
            and min(self.hso_lr + self.dyn_lr) > 0,
            "hso_steps must be a non-empty list of integers >= 1": bool(self.hso_steps) and min(self.hso_steps) >= 1,
            "dyn_params must be 'all' or 'norms_biases'": self.dyn_params in ("all", "norms_biases"),
        })


@dataclass(frozen=True)
class Chunk:
    chunk: str
    document: str
    ids: list[int]


@dataclass(frozen=True)
class Setting:
    """A method with its settings, as data: ``method`` is ``none``, ``hso`` or ``dynamic_eval``."""

    method: str
    lr: float = 0.0
    steps: int = 0

    @property
    def name(self) -> str:
        return setting_name(self.method, self.lr, self.steps)

    def scorer(self, model: Any, tok: Any, cfg: HSOPerplexityConfig) -> Any:
        from models.hso import HSO, DynamicEvaluation, NoAdaptation

        if self.method == "hso":
            return HSO(model, tok, lr=self.lr, steps_per_segment=self.steps, segment=cfg.segment, window=cfg.window)
        if self.method == "dynamic_eval":
            return DynamicEvaluation(model, tok, lr=self.lr, steps_per_segment=self.steps, decay=cfg.dyn_decay,
                                     params=cfg.dyn_params, segment=cfg.segment, window=cfg.window)
        return NoAdaptation(model, tok, segment=cfg.segment, window=cfg.window)


def chunks(domain: str, phase: str, tok: Any, cfg: HSOPerplexityConfig, model: str = "") -> list[Chunk]:
    """Chunks of ``phase`` ("dev": the dev split; "test": the test split, then the training split) until the phase's
    token count (``model_test_tokens[model]`` if given, else ``test_tokens``) is reached; the last chunk is cut to
    it, so a smaller count gives a prefix of the same chunks."""
    budget = cfg.dev_tokens if phase == "dev" else cfg.model_test_tokens.get(model, cfg.test_tokens)
    splits = ["dev"] if phase == "dev" else ["test", "train"]
    out: list[Chunk] = []
    for split in splits:
        for doc, text in documents(domain, split):
            ids = list(tok(text)["input_ids"])
            for start in range(0, len(ids) - 1, cfg.chunk_tokens):
                piece = ids[start: start + min(cfg.chunk_tokens, budget + 1)]
                if len(piece) < 2:
                    break
                out.append(Chunk(f"{doc}#{start // cfg.chunk_tokens}", doc, piece))
                budget -= len(piece) - 1
                if budget <= 0:
                    return out
    return out


def _score(run: RunDir, todo: list[tuple[str, str, str, Chunk, Setting]], models: dict[str, Any],
           cfg: HSOPerplexityConfig) -> None:
    for model_name, domain, phase, chunk, setting in tqdm(todo, desc="scoring", unit="chunk", disable=not todo):
        model, tok = models[model_name]
        scorer = setting.scorer(model, tok, cfg)
        t0 = time.perf_counter()
        lp = scorer.score_text(chunk.ids)
        seconds = time.perf_counter() - t0
        nll = (-lp.double()).split(cfg.segment)
        rows = [{"model": model_name, "domain": domain, "phase": phase, "method": setting.method, "lr": setting.lr,
                 "steps": setting.steps, "document": chunk.document, "chunk": chunk.chunk, "segment": i,
                 "tokens": len(seg), "nll": float(seg.sum()), "seconds": seconds,
                 "state_mb": scorer.state_bytes() / 2**20,
                 "signature": scorer.signature()} for i, seg in enumerate(nll)]
        run.append(_unit(model_name, domain, phase, chunk, setting), rows)


def _unit(model: str, domain: str, phase: str, chunk: Chunk, setting: Setting) -> str:
    return f"{model}/{domain}/{phase}/{chunk.chunk}/{setting.name}"


def grid(cfg: HSOPerplexityConfig) -> list[Setting]:
    return [Setting("none"), *(Setting("hso", lr, s) for lr in cfg.hso_lr for s in cfg.hso_steps),
            *(Setting("dynamic_eval", lr, 1) for lr in cfg.dyn_lr)]


def main(cfg: HSOPerplexityConfig, out_dir: Path, *, limit: int | None = None,
         argv: list[str] | None = None) -> Path:
    """``limit``: only the first N chunks of each phase of each domain."""
    from models import load_model

    with RunDir(out_dir, dataclasses.asdict(cfg) | {"limit": limit}, argv or sys.argv) as run:
        for model_name in cfg.models:
            model, tok, _ = load_model(model_name, device=cfg.device)
            models = {model_name: (model, tok)}
            phases = {d: {p: chunks(d, p, tok, cfg, model_name)[:limit] for p in ("dev", "test")} for d in cfg.domains}
            _score(run, _pending(run, model_name, phases, "dev", {d: grid(cfg) for d in cfg.domains}), models, cfg)
            best = best_settings(_frame(run.rows, "dev").query("model == @model_name"))
            chosen = {d: [Setting(r.method, r.lr, r.steps) for r in best[best["domain"] == d].itertuples()]
                      for d in cfg.domains}
            _score(run, _pending(run, model_name, phases, "test", chosen), models, cfg)
            del model, models
        return finish(run.path)


def _pending(run: RunDir, model: str, phases: dict[str, dict[str, list[Chunk]]], phase: str,
             settings: dict[str, list[Setting]]) -> list[tuple[str, str, str, Chunk, Setting]]:
    done = run.done
    return [(model, domain, phase, chunk, s) for domain, by_phase in phases.items() for chunk in by_phase[phase]
            for s in settings[domain] if _unit(model, domain, phase, chunk, s) not in done]


def _frame(rows: list[dict[str, Any]], phase: str | None = None) -> pd.DataFrame:
    df = pd.DataFrame([{k: v for k, v in r.items() if k != "signature"} for r in rows])
    return df if phase is None or df.empty else df[df["phase"] == phase]


def finish(run_dir: Path) -> Path:
    """rows.parquet, summary.csv (test), tuning.csv (dev), figures and report.md of a run directory."""
    from analysis.frames import complete_rows
    from figures import hso as hso_figures
    from figures import style

    rows, _ = complete_rows(run_dir / "rows.jsonl")
    df = _frame(rows)
    df.to_parquet(run_dir / "rows.parquet", index=False)
    test = perplexity_table(df[df["phase"] == "test"])
    dev = perplexity_table(df[df["phase"] == "dev"])
    test.to_csv(run_dir / "summary.csv", index=False)
    dev.to_csv(run_dir / "tuning.csv", index=False)
    style.save(hso_figures.perplexity(test), run_dir / "figures" / "hso_perplexity")
    style.save(hso_figures.steps(dev), run_dir / "figures" / "hso_steps")
    report = run_dir / "report.md"
    report.write_text(report_text(test, dev, rows[0]["signature"] if rows else {}))
    print(report.read_text())
    return run_dir


def report_text(test: pd.DataFrame, dev: pd.DataFrame, signature: dict[str, Any]) -> str:
    def ci(v: float, lo: float, hi: float, digits: int = 2) -> str:
        return f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"

    lines = ["# HSO perplexity", "",
             "Streaming perplexity (each segment scored before the method adapts to it); 95% bootstrap CIs over "
             "segments, Δ log-ppl paired (the same segments resampled for both methods; negative = better than no "
             "adaptation). Settings tuned on the dev split (tuning.csv); s/token is wall time on this machine; "
             "state MB is what the method keeps beyond the weights at a full window (cache; HSO: its moments and "
             "gradient; dynamic evaluation: original weights, squared-gradient means, gradients), activations not "
             "counted (`benchmarks/hso.py` measures peak memory).", "",
             "| model | domain | method | tokens | perplexity | Δ log-ppl (nats/token) | segments better | s/token "
             "| state MB |", "|---|---|---|---|---|---|---|---|---|"]
    for r in test.itertuples():
        delta = "—" if r.method == "none" else ci(r.delta_logppl, r.delta_lo, r.delta_hi, 4)
        better = "—" if r.method == "none" else f"{100 * r.segments_better:.0f}%"
        lines.append(f"| {r.model} | {r.domain} | {r.name} | {r.tokens:,} | {ci(r.ppl, r.ppl_lo, r.ppl_hi)} | "
                     f"{delta} | {better} | {r.s_per_token:.4f} | {r.state_mb:.0f} |")
    lines += ["", "Dev-split tuning (perplexity per setting):", "", "| model | domain | setting | perplexity |",
              "|---|---|---|---|"]
    lines += [f"| {r.model} | {r.domain} | {r.name} | {r.ppl:.2f} |" for r in dev.itertuples()]
    lines += ["", f"Scorer signature (last model): `{signature}`", "",
              "![perplexity](figures/hso_perplexity.png)", "", "![steps](figures/hso_steps.png)", ""]
    return "\n".join(lines)
