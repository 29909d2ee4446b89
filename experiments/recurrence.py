"""``lq run recurrence``: perplexity of a frozen decoder with a trained recurrence module (``models.recurrence``)
against the baselines at equal memory or compute, on held-out long documents (issue: recurrence; DESIGN.md §8).

Text: the test documents of each domain (Bible books, Shakespeare's works, Wikipedia articles; none seen in
training), cut into pieces of ``context`` tokens (documents taken in turn, so one long play does not fill a domain),
the first ``pieces`` of each domain. Every method reads each piece from its first token; the scored tokens are the
same for all of them: those after the largest window (``max(windows)``), so every window method has started over
at least once and the full context has at least that much context.

Methods, for each window W of ``windows``:
- ``recurrent``: disjoint windows of W tokens, the memory carried from window to window;
- ``reset``: the same, but every window read with the module's learned initial memory (no carry-over): what the
  module does without recurrence, as a domain adapter would;
- ``disjoint``: the base alone on the same disjoint windows (the recurrent model with its gates shut);
- ``disjoint+slots``: the base alone on disjoint windows of W + ``memory_slots`` tokens (the recurrent model's
  cache plus its memory, spent on tokens instead);
- ``sliding``: the base with a KV cache of the last W tokens (training-free), advanced ``sliding_stride`` tokens
  per forward: each token sees between W - stride and W - 1 tokens before it;
- ``sliding+sink``: the same, but the cache keeps the text's first ``sink_tokens`` tokens (attention sinks; Xiao et
  al., 2023, StreamingLLM) and the last W - stride - sink_tokens: without them a sliding window does worse than
  disjoint windows, which always start with a first token;
and once ``full``: the base over the whole piece (the upper bound; ``context`` must fit its positions).

Per (domain, piece, method) one row: the summed NLL of the scored tokens, their count, the wall time of reading
the piece, and the state the method keeps while reading (``state_mb``: cached keys and values at their largest,
plus the recurrent model's memory). ``finish`` writes perplexity with 95% bootstrap CIs over pieces, the change
in log-perplexity against the sliding window with sink tokens of the same W and against the full context (paired:
the same pieces resampled), seconds per token, the figure of perplexity against memory and against time, and
report.md.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from experiments.config import check
from experiments.corpora import DOMAINS
from experiments.rundir import RunDir

FAMILIES = ("recurrent", "reset", "disjoint", "disjoint+slots", "sliding", "sliding+sink", "full")


@dataclass(frozen=True)
class RecurrenceConfig:
    module: str = "smollm2-135m-recurrence"  # a folder written by `lq train recurrence`, or a shipped module's name
    domains: list[str] = field(default_factory=lambda: ["bible", "shakespeare", "wikipedia"])
    windows: list[int] = field(default_factory=lambda: [64, 128, 256])
    context: int = 2048
    pieces: int = 8
    sliding_stride: int = 16
    sink_tokens: int = 4
    n_boot: int = 1000
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        check("recurrence", {
            f"domains must be a non-empty list of {', '.join(DOMAINS)}": bool(self.domains)
            and set(self.domains) <= set(DOMAINS),
            "windows must be a non-empty list of integers >= 2": bool(self.windows) and min(self.windows) >= 2,
            "context must exceed the largest window": bool(self.windows) and self.context > max(self.windows),
            "pieces and n_boot must be >= 1": min(self.pieces, self.n_boot) >= 1,
            "sliding_stride must be >= 1 and below the smallest window": bool(self.windows)
            and 1 <= self.sliding_stride < min(self.windows),
            "sink_tokens must be >= 1 and leave room in the smallest window": bool(self.windows)
            and 1 <= self.sink_tokens < min(self.windows) - self.sliding_stride,
        })


@dataclass(frozen=True)
class Method:
    family: str
    window: int

    @property
    def name(self) -> str:
        return "full" if self.family == "full" else f"{self.family} W={self.window}"


def methods(cfg: RecurrenceConfig) -> list[Method]:
    return [*(Method(f, w) for w in cfg.windows for f in FAMILIES[:-1]), Method("full", cfg.context)]


def pieces(tok: Any, domain: str, cfg: RecurrenceConfig) -> list[tuple[str, list[int]]]:
    """The first ``pieces`` test pieces of ``context`` tokens of a domain, documents taken in turn."""
    from experiments.corpora import documents

    per_doc = []
    for doc, text in documents(domain, "test", bible="book"):
        ids = list(tok(text)["input_ids"])
        per_doc.append([(f"{doc}#{i}", ids[a: a + cfg.context])
                        for i, a in enumerate(range(0, len(ids) - cfg.context + 1, cfg.context))])
    return [p for group in zip_longest(*per_doc) for p in group if p is not None][: cfg.pieces]


def read(rec: Any, method: Method, ids: list[int], stride: int, sink: int) -> tuple[Any, float]:
    """(len(ids) - 1,) log-probabilities of ``ids[1:]`` under ``method``, and the state it keeps, in bytes."""
    import torch

    from models.hso import NoAdaptation, kv_bytes_per_token
    from models.recurrence import target_logprobs

    kv = kv_bytes_per_token(rec.model.config)
    slots = rec.memory_slots
    with torch.inference_mode():
        if method.family in ("sliding", "sliding+sink"):
            scorer = NoAdaptation(rec.model, segment=stride, window=method.window - stride,
                                  sink=sink if method.family == "sliding+sink" else 0)
            return scorer.score_text(ids).double(), float(method.window * kv)
        if method.family == "full":
            text = torch.tensor(ids, device=rec.model.device)
            logits = rec.model(input_ids=text[None]).logits[0]
            return target_logprobs(logits[:-1], text[1:]).cpu(), float(len(ids) * kv)
        window = method.window + (slots if method.family == "disjoint+slots" else 0)
        reads = method.family in ("recurrent", "reset")
        lp = rec.token_logprobs(ids, window, memory=reads, carry=method.family == "recurrent")
        return lp.cpu(), float(window * kv + (slots * rec.module.initial.shape[1] * 4 if reads else 0))


def _unit(domain: str, piece: str, method: Method) -> str:
    return f"{domain}/{piece}/{method.name}"


def main(cfg: RecurrenceConfig, out_dir: Path, *, limit: int | None = None, argv: list[str] | None = None) -> Path:
    """``limit``: only the first N pieces of each domain."""
    from models.recurrence import load_recurrent

    with RunDir(out_dir, dataclasses.asdict(cfg) | {"limit": limit}, argv or sys.argv) as run:
        rec, base = load_recurrent(cfg.module, device=cfg.device)
        tok = rec.tokenizer
        skip = max(cfg.windows)
        todo = [(d, name, ids, m) for d in cfg.domains for name, ids in pieces(tok, d, cfg)[:limit]
                for m in methods(cfg) if _unit(d, name, m) not in run.done]
        signature = {"module": cfg.module, "recurrence": rec.settings(), "base": base,
                     "sliding_stride": cfg.sliding_stride, "sink_tokens": cfg.sink_tokens, "scored_from": skip}
        for domain, name, ids, method in tqdm(todo, desc="reading", unit="piece", disable=not todo):
            t0 = time.perf_counter()
            lp, state = read(rec, method, ids, cfg.sliding_stride, cfg.sink_tokens)
            seconds = time.perf_counter() - t0
            scored = -lp[skip - 1:]
            run.append(_unit(domain, name, method), [{
                "domain": domain, "piece": name, "method": method.name, "family": method.family,
                "window": method.window, "tokens": len(scored), "nll": float(scored.sum()),
                "read_tokens": len(ids), "seconds": seconds, "state_mb": state / 2**20, "signature": signature}])
        rec.remove()
        return finish(run.path, cfg)


def summary(df: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per (domain, method), and over all domains: perplexity [95% CI over pieces], Δ log-ppl (nats/token) against
    the sliding window with sink tokens of the same W (``delta_sliding``) and against the full context [paired
    CIs], s/token and state MB."""
    from analysis.stats import corpus_ci

    parts = [df, df.assign(domain="all")]
    df = pd.concat(parts, ignore_index=True).assign(example_id=lambda d: d["domain"] + "/" + d["piece"])
    ppl = corpus_ci(df, "nll", by=("domain", "method"), rank=None, n_boot=n_boot, seed=seed, denominator="tokens")
    out = ppl.rename(columns={"value": "logppl", "lo": "logppl_lo", "hi": "logppl_hi", "n": "pieces"})
    for c in ("logppl", "logppl_lo", "logppl_hi"):
        out[c.replace("logppl", "ppl")] = np.exp(out[c])
    meta = df.groupby(["domain", "method"], sort=False).agg(
        family=("family", "first"), window=("window", "first"), tokens=("tokens", "sum"),
        read_tokens=("read_tokens", "sum"), seconds=("seconds", "sum"), state_mb=("state_mb", "max"))
    meta["s_per_token"] = meta.pop("seconds") / meta.pop("read_tokens")
    out = out.join(meta, on=["domain", "method"])
    nll = df.set_index(["domain", "piece", "method"])["nll"]
    for against in ("sliding", "full"):
        rows = []
        for (domain, method), g in df.groupby(["domain", "method"], sort=False):
            family, window = g["family"].iloc[0], g["window"].iloc[0]
            base = "full" if against == "full" else f"sliding+sink W={window}"
            if family in ("full", "sliding+sink" if against == "sliding" else "full") or (
                    domain, g["piece"].iloc[0], base) not in nll.index:
                continue
            paired = g.assign(diff=g["nll"].to_numpy() - nll.loc[[(domain, p, base) for p in g["piece"]]].to_numpy())
            ci = corpus_ci(paired, "diff", by=("domain",), rank=None, n_boot=n_boot, seed=seed, denominator="tokens")
            rows.append({"domain": domain, "method": method, f"delta_{against}": ci["value"].iloc[0],
                         f"delta_{against}_lo": ci["lo"].iloc[0], f"delta_{against}_hi": ci["hi"].iloc[0]})
        if rows:
            out = out.merge(pd.DataFrame(rows), on=["domain", "method"], how="left")
    for against in ("sliding", "full"):
        for c in (f"delta_{against}", f"delta_{against}_lo", f"delta_{against}_hi"):
            if c not in out:
                out[c] = np.nan
    order = {m: i for i, m in enumerate(dict.fromkeys(df["method"]))}
    return out.sort_values(["domain", "method"], key=lambda s: s.map(order) if s.name == "method" else s,
                           kind="stable").reset_index(drop=True)


def finish(run_dir: Path, cfg: RecurrenceConfig | None = None) -> Path:
    """rows.parquet, summary.csv, figures and report.md of a run directory."""
    import json

    from analysis.frames import complete_rows
    from figures import recurrence as recurrence_figures
    from figures import style

    run_dir = Path(run_dir)
    if cfg is None:
        saved = json.loads((run_dir / "config.json").read_text())["config"]
        cfg = RecurrenceConfig(**{k: v for k, v in saved.items() if k != "limit"})
    rows, _ = complete_rows(run_dir / "rows.jsonl")
    df = pd.DataFrame([{k: v for k, v in r.items() if k not in ("run_id", "unit", "unit_rows")} for r in rows])
    df.drop(columns=["signature"]).to_parquet(run_dir / "rows.parquet", index=False)
    table = summary(df, n_boot=cfg.n_boot, seed=cfg.seed)
    table.to_csv(run_dir / "summary.csv", index=False)
    style.save(recurrence_figures.memory(table), run_dir / "figures" / "recurrence_memory")
    style.save(recurrence_figures.time(table), run_dir / "figures" / "recurrence_time")
    report = run_dir / "report.md"
    report.write_text(report_text(table, rows[0]["signature"] if rows else {}, cfg))
    print(report.read_text())
    return run_dir


def verdicts(table: pd.DataFrame) -> list[str]:
    """One plain sentence per window: does the recurrent model beat the sliding window (with sink tokens) of the same
    W, all domains pooled?"""
    pooled = table[table["domain"] == "all"].set_index("method")
    out = []
    for r in pooled[pooled["family"] == "recurrent"].itertuples():
        d, lo, hi = r.delta_sliding, r.delta_sliding_lo, r.delta_sliding_hi
        if math.isnan(d):
            continue
        word = "beats" if hi < 0 else "loses to" if lo > 0 else "does not differ significantly from"
        sliding = pooled.loc[f"sliding+sink W={r.window}", "state_mb"]
        out.append(f"- W={r.window}: the recurrent model {word} the sliding window with sink tokens of the same cache "
                   "(Δ log-ppl "
                   f"{d:+.4f} [{lo:+.4f}, {hi:+.4f}] nats/token; state {r.state_mb:.1f} MB vs {sliding:.1f} MB).")
    return out


def report_text(table: pd.DataFrame, signature: dict[str, Any], cfg: RecurrenceConfig) -> str:
    def ci(v: float, lo: float, hi: float, digits: int = 2, sign: str = "") -> str:
        return "—" if math.isnan(v) else f"{v:{sign}.{digits}f} [{lo:{sign}.{digits}f}, {hi:{sign}.{digits}f}]"

    lines = ["# Recurrence: perplexity at equal memory", "",
             f"Test pieces of {cfg.context} tokens ({cfg.pieces} per domain); every method scores the tokens after "
             f"the first {max(cfg.windows)} of each piece. Perplexity with 95% bootstrap CIs over pieces; Δ: change "
             "in log-perplexity (nats/token; negative = better) against the sliding window with sink tokens of the "
             "same W and "
             "against the full context, paired over pieces. s/token: wall time per token read on this machine. "
             "State MB: what the method keeps while reading (cached keys and values at their largest, float32; "
             "the recurrent model adds its memory slots).", "",
             "| domain | method | pieces | tokens | perplexity | Δ vs sliding+sink | Δ vs full | s/token | state MB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in table.itertuples():
        lines.append(f"| {r.domain} | {r.method} | {r.pieces} | {r.tokens:,} | {ci(r.ppl, r.ppl_lo, r.ppl_hi)} | "
                     f"{ci(r.delta_sliding, r.delta_sliding_lo, r.delta_sliding_hi, 4, '+')} | "
                     f"{ci(r.delta_full, r.delta_full_lo, r.delta_full_hi, 4, '+')} | "
                     f"{r.s_per_token:.4f} | {r.state_mb:.1f} |")
    lines += ["", "Does recurrence beat the sliding window at equal memory?", "", *verdicts(table), "",
              f"Signature: `{signature}`", "", "![memory](figures/recurrence_memory.png)", "",
              "![time](figures/recurrence_time.png)", ""]
    return "\n".join(lines)
