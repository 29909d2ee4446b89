"""``lq run nar``: RUM-SUNDAE (``models.nar``) against its baselines on KJV -> BBE test verses (issue: RUM-SUNDAE;
DESIGN.md §6: one ``Work`` per system on the experiment loop, methods as data).

Systems, all on the first ``n`` test verses (the verses every system can read), one verse at a time (batch 1):
- each RUM-SUNDAE model of ``models`` (folders of ``lq train nar``: the MLM-initialised model, the same network
  randomly initialised, plain denoising with unroll = 1): iterative refinement (family ``refine``) at each T of
  ``refine_steps``, from random tokens over the ``length_candidates`` most probable target lengths; the start is
  seeded per verse, so the runs of one verse at growing T follow one trajectory;
- the autoregressive Marian model ``ar_model`` (``lq train mt --set corpus=bible-kjv-bbe --set lowercase=true``,
  trained on lowercased text, as the masked LM's vocabulary is uncased): greedy and beam search of each k of
  ``beam_sizes``;
- the copy of the (lowercased) source (``copy``).

Every row also holds the AR model's log-probability of its output (``ar_logprob``: the output's text, retokenised
for the AR model, EOS included; ``ar_tokens``): how likely each system's answers are under one autoregressive
model, a likelihood-quality view across model families. A refinement row's ``logprob`` is the sum of the NAR
model's own per-position log-probabilities of its output (a factorised score, not a sequence probability).

``main`` records how each system was trained in training.json; ``finish`` writes rows.parquet, summary.csv
(case-insensitive BLEU and chrF with 95% bootstrap CIs over verses; repeated consecutive words, seq-rep-4, length
error in words; sentences per second and the speed-up over the AR model's greedy and beam search, paired over
verses; the AR model's NLL per token of the outputs), figures and report.md.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import zlib
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from experiments.config import check
from experiments.loop import Example, Found, Method, Sources, Work, execute, translation_examples
from experiments.rundir import RunDir

AR_COMMAND = "lq train mt --set corpus=bible-kjv-bbe --set lowercase=true"
TRAINING = "training.json"  # how each system was trained (``training_records``)


@dataclass(frozen=True)
class NARRunConfig:
    models: list[str] = field(default_factory=lambda: ["nar-mlm-u2", "nar-random-u2", "nar-mlm-u1"])
    ar_model: str = "bible-kjv-bbe-lc-marian"
    corpus: str = "bible-kjv-bbe"
    split: str = "test"
    n: int = 200
    max_source_tokens: int = 128
    refine_steps: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])
    length_candidates: int = 3
    beam_sizes: list[int] = field(default_factory=lambda: [5])
    max_len_ratio: float = 2.0
    max_len: int = 128
    n_boot: int = 1000
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        check("nar", {
            "models must be a non-empty list": bool(self.models),
            "n, max_source_tokens, length_candidates, max_len and n_boot must be >= 1":
                min(self.n, self.max_source_tokens, self.length_candidates, self.max_len, self.n_boot) >= 1,
            "refine_steps must be a non-empty list of integers >= 0": bool(self.refine_steps)
            and min(self.refine_steps) >= 0,
            "beam_sizes must be a list of integers >= 2": all(k >= 2 for k in self.beam_sizes),
            "max_len_ratio must be > 0": self.max_len_ratio > 0,
        })


def model_folder(name: str, marker: str, command: str) -> Path:
    """``name`` as a folder, or ``$LQ_CACHE/models/<name>``, holding ``marker``; a clear error naming ``command``
    otherwise."""
    from models import ModelNotAvailableError, cache_dir

    folder = Path(name) if Path(name).is_dir() else cache_dir() / "models" / name
    if not (folder / marker).is_file():
        raise ModelNotAvailableError(f"no model {name!r} (looked for {folder / marker}); train it with `{command}`")
    return folder


@dataclass(frozen=True)
class NARSystem:
    """A trained RUM-SUNDAE model as the experiment loop's ``lm``: what its rows' signature records."""

    name: str
    model: Any
    record: dict[str, Any]

    def signature(self) -> dict[str, Any]:
        cfg = self.record.get("config", {})
        return {"model": self.name, "family": "rum-sundae", "init": cfg.get("init"), "unroll": cfg.get("unroll"),
                "mlm": self.record.get("mlm"), "training_steps": self.record.get("steps"),
                "data_hash": self.record.get("data_hash"), "output_vocabulary": int(len(self.model.output_ids))}


@dataclass(frozen=True)
class AR:
    """The autoregressive model: its adapter, tokenizer and the source ids of every verse, for ``ar_logprob``."""

    lm: Any
    tok: Any
    sources: dict[str, list[int]]

    def ids(self, text: str) -> list[int]:
        return [*self.tok(text.lower(), add_special_tokens=False)["input_ids"], self.lm.eos_id]

    def columns(self, decode: Any, ex: Example, found: Found) -> dict[str, Any]:
        h = found.hypothesis
        ids = self.ids(decode(h.token_ids).strip() if h else "")
        return {"ar_logprob": float(self.lm.score(self.sources[ex.example_id], ids).sum()), "ar_tokens": len(ids)}


def _refine(model: Any, cfg: NARRunConfig, ex: Example, steps: int) -> Any:
    from decoding import Hypothesis, SearchResult, SearchStats
    from models.nar import decode

    d = decode(model, ex.source_ids, steps=steps, lengths=cfg.length_candidates,
               seed=cfg.seed + zlib.crc32(ex.example_id.encode()))
    h = Hypothesis(tuple(d.tokens), d.mean_logprob * d.length, d.mean_logprob, (), False)
    return SearchResult([h], False, SearchStats(forward_calls=d.forwards, wall_s=d.seconds, extra={
        "steps_run": d.steps, "predicted_length": d.length}))


def _copy(ar: AR, ex: Example) -> Any:
    from decoding import Hypothesis, SearchResult, SearchStats

    ids = ar.ids(ex.source)
    lp = ar.lm.score(ar.sources[ex.example_id], ids)
    return SearchResult([Hypothesis(tuple(ids), float(lp.sum()), float(lp.sum()), tuple(lp.tolist()), True)], False,
                        SearchStats(wall_s=math.nan))  # no decoding: no time to compare


def works(cfg: NARRunConfig, limit: int | None) -> list[Work]:
    """One ``Work`` per system (the AR model with its baselines first), all on the same verses."""
    from decoding import beam_search, greedy_search
    from experiments.loop import load_translation_lm
    from models.nar import SETTINGS, load

    sources = Sources(cfg.corpus, cfg.split, cfg.n, cfg.max_source_tokens, cfg.max_len_ratio, cfg.max_len)
    dataset = f"{cfg.corpus}/{cfg.split}"
    ar_path = model_folder(cfg.ar_model, "config.json", AR_COMMAND)
    lm, tok, info, prompt = load_translation_lm(str(ar_path), shots=0, device=cfg.device, corpus=cfg.corpus)
    ar_examples = translation_examples(sources, tok, prompt, limit)
    ar = AR(lm, tok, {ex.example_id: ex.source_ids for ex in ar_examples})

    def decoder(t: Any) -> Any:
        return lambda ids: str(t.decode(ids, skip_special_tokens=True))

    def beam(ex: Example, k: int) -> Any:
        return beam_search(lm, ex.source_ids, beam_size=k, max_len=ex.max_len)

    ar_methods = [Method("greedy", {}, lambda ex: greedy_search(lm, ex.source_ids, max_len=ex.max_len)),
                  *(Method("beam", {"beam_size": k}, partial(beam, k=k)) for k in cfg.beam_sizes),
                  Method("copy", {}, partial(_copy, ar))]
    out = [Work(lm, tok, cfg.ar_model, dataset, ar_examples, ar_methods, prefix=f"{cfg.ar_model}/",
                columns=partial(ar.columns, decoder(tok)))]
    for name in cfg.models:
        folder = model_folder(name, SETTINGS, "lq train nar (--set init=random, --set unroll=1 for the ablations)")
        model, nar_tok = load(folder)
        model.to(cfg.device)
        system = NARSystem(name, model, json.loads((folder / SETTINGS).read_text()))
        examples = translation_examples(sources, nar_tok, lambda source, demos: source, limit)
        refine = [Method("refine", {"refine_steps": t, "length_candidates": cfg.length_candidates, "seed": cfg.seed},
                         partial(_refine, model, cfg, steps=t)) for t in cfg.refine_steps]
        out.append(Work(system, nar_tok, name, dataset, examples, refine, prefix=f"{name}/",
                        columns=partial(ar.columns, decoder(nar_tok))))
    common = set.intersection(*({ex.example_id for ex in w.examples} for w in out))
    return [dataclasses.replace(w, examples=[ex for ex in w.examples if ex.example_id in common]) for w in out]


def _given(w: Work) -> Work:
    return w


def training_records(cfg: NARRunConfig) -> dict[str, dict[str, Any]]:
    """How every system was trained (its folder's record: command, steps, minutes, parameters, card scores), so a
    run directory says it without the models."""
    from models.nar import OUTPUTS, SETTINGS

    out: dict[str, dict[str, Any]] = {}
    ar = json.loads((model_folder(cfg.ar_model, "config.json", AR_COMMAND) / "training.json").read_text())
    out[cfg.ar_model] = {k: ar.get(k) for k in ("command", "steps", "epochs", "training_seconds", "n_train",
                                                "data_hash", "evaluation")}
    for name in cfg.models:
        folder = model_folder(name, SETTINGS, "lq train nar")
        nar = json.loads((folder / SETTINGS).read_text())
        out[name] = {k: nar.get(k) for k in ("command", "steps", "training_seconds", "n_parameters", "n_train",
                                             "data_hash", "mlm", "config", "final", "test")}
        out[name]["output_vocabulary"] = len(json.loads((folder / OUTPUTS).read_text()))
    return out


def main(cfg: NARRunConfig, out_dir: Path, *, limit: int | None = None, argv: list[str] | None = None) -> Path:
    """``limit``: only the first N verses."""
    with RunDir(out_dir, dataclasses.asdict(cfg) | {"limit": limit}, argv or sys.argv) as run:
        for w in works(cfg, limit):
            execute(run, partial(_given, w), work=w)
        (run.path / TRAINING).write_text(json.dumps(training_records(cfg), indent=2) + "\n")
        return finish(run.path, cfg)


def summary(df: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per system (``model``, ``method``), rank-0 rows: lowercased corpus BLEU and chrF [95% CIs over verses], the
    AR model's NLL per token of the outputs [CI], repetition, length error, seconds and sentences per second, and
    the speed-up over the AR model's greedy (``speedup_greedy``) and first beam (``speedup_beam``) [paired CIs]."""
    from analysis.frames import numeric, rows
    from analysis.methods import sort_key
    from analysis.quality import add_quality
    from analysis.stats import corpus_ci

    df = rows(df, rank=0)
    lower = add_quality(df.assign(text=df["text"].fillna("").str.lower(), reference=df["reference"].str.lower()))
    lower = lower.assign(**{c: numeric(lower[c]) for c in (
        "ar_logprob", "wall_s", "steps_run", "refine_steps", "beam_size", "seq_rep_4", "rep_consecutive")})
    lower = lower.assign(ar_nll=-lower["ar_logprob"], words=lower["text"].str.split().str.len(),
                         length_error=lambda d: (d["words"] - d["reference"].str.split().str.len()).abs(),
                         rep_consecutive=lower["rep_consecutive"] * 100)
    by = ("model", "method")

    def ci(metric: str, name: str, **kw: Any) -> pd.DataFrame:
        t = corpus_ci(lower, metric, by=by, rank=None, n_boot=n_boot, seed=seed, **kw)
        return t.rename(columns={"value": name, "lo": f"{name}_lo", "hi": f"{name}_hi", "n": "n"})

    out = ci("bleu", "bleu").merge(ci("chrf", "chrf").drop(columns="n"), on=list(by))
    out = out.merge(ci("ar_nll", "ar_nll", denominator="ar_tokens").drop(columns="n"), on=list(by))
    meta = lower.groupby(list(by), sort=False).agg(
        family=("family", "first"), refine_steps=("refine_steps", "first"), beam_size=("beam_size", "first"),
        rep_consecutive=("rep_consecutive", "mean"), seq_rep_4=("seq_rep_4", "mean"),
        length_error=("length_error", "mean"), words=("words", "mean"), steps_run=("steps_run", "mean"),
        seconds=("wall_s", "mean"))
    meta["sentences_per_s"] = 1 / meta["seconds"]
    out = out.join(meta, on=list(by))
    wall = lower.set_index(["model", "method", "example_id"])["wall_s"]
    ar_model = str(lower.loc[lower["family"] == "greedy", "model"].iloc[0]) if (lower["family"] == "greedy").any() \
        else None
    beams = sorted(lower.loc[lower["family"] == "beam", "beam_size"].dropna().astype(int).unique())
    for key, base in (("speedup_greedy", "greedy"), ("speedup_beam", f"beam{beams[0]}" if beams else None)):
        values = []
        for model, method in zip(out["model"], out["method"], strict=True):
            g = lower[(lower["model"] == model) & (lower["method"] == method)]
            if ar_model is None or base is None or method == "copy" or (ar_model, base, g["example_id"].iloc[0]) \
                    not in wall.index:
                values.append((np.nan, np.nan, np.nan))
                continue
            paired = g.assign(base=wall.loc[[(ar_model, base, e) for e in g["example_id"]]].to_numpy())
            t = corpus_ci(paired, "base", by=(), rank=None, n_boot=n_boot, seed=seed, denominator="wall_s")
            values.append((t["value"].iloc[0], t["lo"].iloc[0], t["hi"].iloc[0]))
        out[[key, f"{key}_lo", f"{key}_hi"]] = values
    models = {m: i for i, m in enumerate(dict.fromkeys(df["model"]))}
    order = [(models[m], rank, 0 if math.isnan(t) else t, 0 if math.isnan(k) else k) for m, rank, t, k in zip(
        out["model"], sort_key(out["family"]), out["refine_steps"], out["beam_size"], strict=True)]
    return out.iloc[sorted(range(len(out)), key=order.__getitem__)].reset_index(drop=True)


def finish(run_dir: Path, cfg: NARRunConfig | None = None) -> Path:
    """rows.parquet (with the metric columns), summary.csv, figures and report.md of a run directory."""
    from analysis.frames import consolidate, load_run
    from figures import nar as nar_figures
    from figures import style

    run_dir = Path(run_dir)
    if cfg is None:
        saved = json.loads((run_dir / "config.json").read_text())["config"]
        cfg = NARRunConfig(**{k: v for k, v in saved.items() if k != "limit"})
    consolidate(run_dir)
    table = summary(load_run(run_dir), n_boot=cfg.n_boot, seed=cfg.seed)
    table.to_csv(run_dir / "summary.csv", index=False)
    style.save(nar_figures.steps(table), run_dir / "figures" / "nar_steps")
    style.save(nar_figures.likelihood(table), run_dir / "figures" / "nar_likelihood")
    report = run_dir / "report.md"
    report.write_text(report_text(table, cfg))
    print(report.read_text())
    return run_dir


def report_text(table: pd.DataFrame, cfg: NARRunConfig) -> str:
    def ci(v: float, lo: float, hi: float, digits: int = 1) -> str:
        return "—" if math.isnan(v) else f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"

    def num(v: float, digits: int = 1) -> str:
        return "—" if math.isnan(v) else f"{v:.{digits}f}"

    lines = ["# RUM-SUNDAE against its baselines (KJV -> BBE)", "",
             f"{int(table['n'].max())} test verses, one at a time. BLEU and chrF are sacreBLEU corpus scores of the "
             "lowercased outputs against the lowercased references (the masked LM's vocabulary is uncased; "
             "equivalent to sacreBLEU's `case:lc` signatures), 95% bootstrap CIs over verses. AR NLL/token: the "
             "autoregressive model's negative log-likelihood of each system's outputs per token (lower = likelier). "
             "rep: % of words that repeat the word before; length error: mean |output words - reference words|. "
             "Speed-ups: the AR model's mean time per verse over the system's, paired over verses.", "",
             "| model | method | BLEU | chrF | AR NLL/token | rep % | seq-rep-4 | length error | steps run | "
             "sentences/s | speed-up vs greedy | vs beam |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in table.itertuples():
        lines.append(f"| {r.model} | {r.method} | {ci(r.bleu, r.bleu_lo, r.bleu_hi)} | "
                     f"{ci(r.chrf, r.chrf_lo, r.chrf_hi)} | {ci(r.ar_nll, r.ar_nll_lo, r.ar_nll_hi, 2)} | "
                     f"{num(r.rep_consecutive)} | {num(r.seq_rep_4, 3)} | {num(r.length_error)} | "
                     f"{num(r.steps_run)} | {num(r.sentences_per_s)} | "
                     f"{ci(r.speedup_greedy, r.speedup_greedy_lo, r.speedup_greedy_hi, 2)} | "
                     f"{ci(r.speedup_beam, r.speedup_beam_lo, r.speedup_beam_hi, 2)} |")
    lines += ["", f"Config: `{json.dumps(dataclasses.asdict(cfg))}`", "", "![steps](figures/nar_steps.png)", "",
              "![likelihood](figures/nar_likelihood.png)", ""]
    return "\n".join(lines)
