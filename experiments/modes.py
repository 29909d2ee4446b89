"""``lq run modes`` (the default experiment): how the modes of a translation model compare with what beam search,
greedy search and sampling return (Stahlberg & Byrne 2019, "On NMT search errors and model errors"; Yoshida 2024).

For each of ``n`` test sources of a parallel corpus: greedy; beam k in ``beam_sizes`` (every beam hypothesis
kept, rank 0 = the beam's answer); the exact mode and the exact non-empty mode (``MinLength(1)``), each under a
time budget; the exact modes of the lengths ``reference length + length_offsets`` (clipped to ``[0, max_len]``; one
length-conditional search; rank 0 is the mode of the reference length, then by distance from it); and ``n_samples``
ancestral samples.
``max_len`` for every method of a source is ``ceil(max_len_ratio * source tokens) + 5``, capped at ``max_len``,
so every method searches the same output space.

An encoder-decoder model translates the source directly. A decoder-only model gets a ``shots``-shot prompt
(``experiments.data.few_shot_prompt``) and a translation ends at the first newline: the adapter treats the
newline token as EOS and masks the model's own EOS and every other token that holds a newline, so "the empty
translation" means a newline straight away.

Writes the run directory (rows.jsonl, then rows.parquet with metrics), figures/ and report.md.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from decoding import (
    Hypothesis,
    MinLength,
    SearchResult,
    beam_search,
    exact_search,
    greedy_search,
    length_conditional_modes,
    sample,
)
from experiments.rundir import RunDir


@dataclass(frozen=True)
class ModesConfig:
    model: str = "bible-de-en-marian"
    corpus: str = "bible-de-en"
    split: str = "test"
    n: int = 20
    max_source_tokens: int = 24
    beam_sizes: list[int] = field(default_factory=lambda: [1, 2, 5, 10, 50])
    max_len_ratio: float = 2.0
    max_len: int = 128
    max_seconds: float = 8.0
    max_nodes: int | None = None
    length_offsets: list[int] = field(default_factory=lambda: [-4, -2, 0, 2, 4])
    n_samples: int = 20
    temperature: float = 1.0
    seed: int = 0
    shots: int = 4
    device: str = "cpu"

    def __post_init__(self) -> None:
        checks = {
            "n must be >= 1": self.n >= 1,
            "max_source_tokens must be >= 1": self.max_source_tokens >= 1,
            "beam_sizes must be positive integers": all(k >= 1 for k in self.beam_sizes),
            "max_len_ratio must be > 0": self.max_len_ratio > 0,
            "max_len must be >= 1": self.max_len >= 1,
            "max_seconds must be > 0 (exact search on a real model needs a budget)": self.max_seconds > 0,
            "max_nodes must be >= 1 or None": self.max_nodes is None or self.max_nodes >= 1,
            "n_samples must be >= 0": self.n_samples >= 0,
            "temperature must be > 0": self.temperature > 0,
            "shots must be >= 0": self.shots >= 0,
            "split must be train, dev or test": self.split in ("train", "dev", "test"),
        }
        failed = [msg for msg, ok in checks.items() if not ok]
        if failed:
            raise SystemExit("bad modes config: " + "; ".join(failed))


@dataclass(frozen=True)
class Example:
    example_id: str
    source: str
    reference: str | None
    source_ids: list[int]
    source_tokens: int
    reference_tokens: int | None
    max_len: int


Search = Callable[[Any, Example], list[tuple[Hypothesis | None, SearchResult, dict[str, Any]]]]


def _one(search: Callable[[Any, Example], SearchResult]) -> Search:
    """A search returning one ranked list: one row per hypothesis (a single ``None`` row when it found none)."""
    def run(lm: Any, ex: Example) -> list[tuple[Hypothesis | None, SearchResult, dict[str, Any]]]:
        res = search(lm, ex)
        return [(h, res, {}) for h in (res.hypotheses or [None])]
    return run


def methods(cfg: ModesConfig) -> dict[str, tuple[dict[str, Any], Search]]:
    """name -> (params recorded in every row, search); ``max_len`` is per source (see the module docstring)."""
    budget = {"max_seconds": cfg.max_seconds, "max_nodes": cfg.max_nodes}
    out: dict[str, tuple[dict[str, Any], Search]] = {
        "greedy": ({}, _one(lambda lm, ex: greedy_search(lm, ex.source_ids, max_len=ex.max_len)))}
    for k in cfg.beam_sizes:
        out[f"beam{k}"] = ({"beam_size": k}, _one(
            lambda lm, ex, k=k: beam_search(lm, ex.source_ids, beam_size=k, max_len=ex.max_len)))
    out["exact"] = (budget, _one(lambda lm, ex: exact_search(lm, ex.source_ids, max_len=ex.max_len, **budget)))
    out["exact_nonempty"] = (budget | {"constraints": ["MinLength(1)"]}, _one(
        lambda lm, ex: exact_search(lm, ex.source_ids, max_len=ex.max_len, constraints=[MinLength(1)], **budget)))

    def by_length(lm: Any, ex: Example) -> list[tuple[Hypothesis | None, SearchResult, dict[str, Any]]]:
        lengths = sorted({min(max(ex.reference_tokens + o, 0), ex.max_len) for o in cfg.length_offsets},
                         key=lambda n: (abs(n - ex.reference_tokens), n))
        results = length_conditional_modes(lm, ex.source_ids, lengths=lengths, **budget)
        return [(results[n].best if results[n].hypotheses else None, results[n], {"target_length": n})
                for n in lengths]

    out["length_conditional"] = (budget | {"length_offsets": cfg.length_offsets}, by_length)
    if cfg.n_samples:
        params = {"n": cfg.n_samples, "temperature": cfg.temperature, "seed": cfg.seed}
        out["sample"] = (params, _one(lambda lm, ex: sample(lm, ex.source_ids, n=cfg.n_samples, max_len=ex.max_len,
                                                            temperature=cfg.temperature, seed=cfg.seed)))
    return out


def load_translation_lm(model: str, *, shots: int, device: str = "cpu") -> tuple[Any, Any, Any, Callable[..., str]]:
    """``(lm, tokenizer, info, prompt)``; ``prompt(source, demonstrations)`` is the text the model is given."""
    from decoding.hf import HFCausalLM, HFSeq2SeqLM
    from experiments.data import few_shot_prompt
    from models import load_model

    hf, tok, info = load_model(model, device=device)
    if info.is_encoder_decoder:
        return HFSeq2SeqLM(hf, tok), tok, info, lambda source, demos: source
    newline = tok.encode("\n", add_special_tokens=False)
    if len(newline) != 1:
        raise SystemExit(f"{model}: a newline is {len(newline)} tokens; few-shot translation needs it to be one "
                         "(it ends a translation)")
    # one line per translation: the newline token is EOS, and every other token holding a newline (e.g. "\n\n") is
    # masked, as is the model's own EOS
    pieces = tok.batch_decode([[i] for i in range(len(tok))])
    multiline = [i for i, piece in enumerate(pieces) if "\n" in piece and i != newline[0]]
    lm = HFCausalLM(hf, tok, eos_id=newline[0], extra_masked_ids=[HFCausalLM(hf, tok).eos_id, *multiline])
    return lm, tok, info, lambda source, demos: few_shot_prompt(demos, source, k=shots)


@dataclass(frozen=True)
class Sources:
    """Which test sources an experiment translates and how long its outputs may be."""

    corpus: str
    split: str
    n: int
    max_source_tokens: int
    max_len_ratio: float
    max_len: int


def examples(sources: Sources, tok: Any, prompt: Callable[..., str], limit: int | None) -> list[Example]:
    """The first ``n`` (or ``limit``) sources of the split, in corpus order, with 1..max_source_tokens tokens."""
    from experiments.data import load_corpus

    corpus = load_corpus(sources.corpus)
    demos = corpus[corpus["split"] == "train"]
    rows = corpus[corpus["split"] == sources.split]
    if rows.empty:
        raise SystemExit(f"{sources.corpus} has no {sources.split} split")
    chosen: list[Example] = []
    want = min(sources.n, limit) if limit else sources.n
    for row in rows.itertuples():
        n_src = len(tok(row.source, add_special_tokens=False)["input_ids"])
        if not 1 <= n_src <= sources.max_source_tokens:
            continue
        ids = list(tok(prompt(row.source, demos))["input_ids"])
        chosen.append(Example(
            example_id=str(row.id), source=row.source, reference=row.target, source_ids=ids, source_tokens=n_src,
            reference_tokens=len(tok(row.target, add_special_tokens=False)["input_ids"]),
            max_len=min(sources.max_len, math.ceil(sources.max_len_ratio * n_src) + 5)))
        if len(chosen) == want:
            break
    return chosen


def result_rows(lm: Any, tok: Any, model: str, dataset: str, ex: Example, name: str, params: dict[str, Any],
                found: list[tuple[Hypothesis | None, SearchResult, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The result-table rows (DESIGN.md §5) of one search of one source, rank by rank."""
    return [{
        "signature": lm.signature() | {"method": name, "params": params}, "model": model, "dataset": dataset,
        "example_id": ex.example_id, "source": ex.source, "reference": ex.reference, "method": name,
        "params": params | {"max_len": ex.max_len} | extra, "rank": rank,
        "text": tok.decode(h.token_ids, skip_special_tokens=True).strip() if h else None,
        "token_ids": list(h.token_ids) if h else [], "n_tokens": h.length if h else None,
        "finished": h.finished if h else None, "logprob": h.logprob if h else None,
        "score": h.score if h else None,
        "certified": res.certified if name.startswith(("exact", "length")) else None,
        "upper_bound": res.stats.upper_bound, "nodes": res.stats.nodes,
        "forward_calls": res.stats.forward_calls, "wall_s": res.stats.wall_s,
        "source_tokens": ex.source_tokens, "reference_tokens": ex.reference_tokens,
        "target_length": extra.get("target_length"), "beam_size": params.get("beam_size"),
    } for rank, (h, res, extra) in enumerate(found)]


def main(cfg: ModesConfig, out_dir: Path, *, limit: int | None = None, argv: list[str] | None = None) -> Path:
    from experiments.report import finish_run

    run = RunDir(out_dir, dataclasses.asdict(cfg) | {"limit": limit}, argv or sys.argv)
    lm, tok, info, prompt = load_translation_lm(cfg.model, shots=cfg.shots, device=cfg.device)
    sources = Sources(cfg.corpus, cfg.split, cfg.n, cfg.max_source_tokens, cfg.max_len_ratio, cfg.max_len)
    todo = [(ex, name, params, search) for ex in examples(sources, tok, prompt, limit)
            for name, (params, search) in methods(cfg).items() if f"{ex.example_id}/{name}" not in run.done]
    for ex, name, params, search in tqdm(todo, desc="searching", unit="search", disable=not todo):
        run.append(f"{ex.example_id}/{name}", result_rows(lm, tok, info.name, f"{cfg.corpus}/{cfg.split}", ex, name,
                                                          params, search(lm, ex)))
    return finish_run(run.path)
