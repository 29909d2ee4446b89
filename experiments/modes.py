"""``lq run modes`` (the default experiment): how the modes of a translation model compare with what beam search,
greedy search and sampling return (Stahlberg & Byrne 2019, "On NMT search errors and model errors"; Yoshida 2024).

For each of ``n`` test sources of a parallel corpus: greedy; beam k in ``beam_sizes`` (every beam hypothesis
kept, rank 0 = the beam's answer); the exact mode and the exact non-empty mode (``MinLength(1)``), each under a
time budget; the exact modes of the lengths ``reference length + length_offsets`` (clipped to ``[0, max_len]``; one
length-conditional search; rank 0 is the mode of the reference length, then by distance from it); and ``n_samples``
ancestral samples.
``max_len`` for every method of a source is ``ceil(max_len_ratio * source tokens) + 5``, capped at ``max_len``,
so every method searches the same output space.

An encoder-decoder model translates the source directly; a decoder-only model gets a ``shots``-shot prompt and a
translation ends at the first newline (``experiments.loop.load_translation_lm``). With ``hso_steps`` > 0 a
decoder-only model's prompt cache is first optimised by that many HSO steps at ``hso_lr`` (``models.hso.HSOLM``),
and every method searches the adapted model (its rows name the model ``<model>+hso(lr=...,steps=...)``).

Writes the run directory (rows.jsonl, then rows.parquet with metrics), figures/ and report.md.
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

from decoding import (
    Constraint,
    MinLength,
    SearchResult,
    beam_search,
    exact_search,
    greedy_search,
    length_conditional_modes,
    sample,
)
from experiments.config import ConfigError, check
from experiments.loop import (
    Example,
    Found,
    Method,
    Sources,
    Work,
    execute,
    load_translation_lm,
    translation_examples,
)
from experiments.rundir import RunDir

if TYPE_CHECKING:
    from experiments.distributed import RayOptions


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
    max_memory_mb: float | None = 4096.0  # of one exact search's tree: a long search cannot exhaust the machine
    length_offsets: list[int] = field(default_factory=lambda: [-4, -2, 0, 2, 4])
    n_samples: int = 20
    temperature: float = 1.0
    seed: int = 0
    shots: int = 4
    hso_steps: int = 0
    hso_lr: float = 0.01
    device: str = "cpu"

    def __post_init__(self) -> None:
        check("modes", {
            "n must be >= 1": self.n >= 1,
            "max_source_tokens must be >= 1": self.max_source_tokens >= 1,
            "beam_sizes must be positive integers": all(k >= 1 for k in self.beam_sizes),
            "max_len_ratio must be > 0": self.max_len_ratio > 0,
            "max_len must be >= 1": self.max_len >= 1,
            "max_seconds must be > 0 (exact search on a real model needs a budget)": self.max_seconds > 0,
            "max_nodes must be >= 1 or None": self.max_nodes is None or self.max_nodes >= 1,
            "max_memory_mb must be > 0 or None": self.max_memory_mb is None or self.max_memory_mb > 0,
            "n_samples must be >= 0": self.n_samples >= 0,
            "temperature must be > 0": self.temperature > 0,
            "shots must be >= 0": self.shots >= 0,
            "hso_steps must be >= 0 and hso_lr > 0": self.hso_steps >= 0 and self.hso_lr > 0,
            "split must be train, dev or test": self.split in ("train", "dev", "test"),
        })


def methods(cfg: ModesConfig, lm: Any) -> list[Method]:
    """The methods of the experiment; ``max_len`` is per source (see the module docstring)."""
    budget = {"budget_s": cfg.max_seconds, "max_nodes": cfg.max_nodes, "max_memory_mb": cfg.max_memory_mb}

    def beam(ex: Example, k: int) -> SearchResult:
        return beam_search(lm, ex.source_ids, beam_size=k, max_len=ex.max_len)

    def exact(ex: Example, constraints: Sequence[Constraint] = ()) -> SearchResult:
        return exact_search(lm, ex.source_ids, max_len=ex.max_len, constraints=constraints,
                            max_seconds=cfg.max_seconds, max_nodes=cfg.max_nodes, max_memory_mb=cfg.max_memory_mb)

    def by_length(ex: Example) -> list[Found]:
        assert ex.reference_tokens is not None
        ref = ex.reference_tokens
        lengths = sorted({min(max(ref + o, 0), ex.max_len) for o in cfg.length_offsets},
                         key=lambda n: (abs(n - ref), n))
        results = length_conditional_modes(lm, ex.source_ids, lengths=lengths, max_seconds=cfg.max_seconds,
                                           max_nodes=cfg.max_nodes, max_memory_mb=cfg.max_memory_mb)
        return [Found(results[n].best if results[n].hypotheses else None, results[n], {"target_length": n})
                for n in lengths]

    out = [Method("greedy", {}, lambda ex: greedy_search(lm, ex.source_ids, max_len=ex.max_len))]
    out += [Method("beam", {"beam_size": k}, partial(beam, k=k)) for k in cfg.beam_sizes]
    out += [
        Method("exact", budget, exact),
        Method("exact_nonempty", budget | {"constraints": "MinLength(1)"}, partial(exact, constraints=[MinLength(1)])),
        Method("length_conditional", budget | {"length_offsets": json.dumps(cfg.length_offsets)}, by_length),
    ]
    if cfg.n_samples:
        out.append(Method("sample", {"n_samples": cfg.n_samples, "temperature": cfg.temperature, "seed": cfg.seed},
                          lambda ex: sample(lm, ex.source_ids, n=cfg.n_samples, max_len=ex.max_len,
                                            temperature=cfg.temperature, seed=cfg.seed)))
    return out


def work(cfg: ModesConfig, limit: int | None) -> Work:
    """The model, its sources and methods: built where the searches run (this process, or each Ray worker)."""
    lm, tok, info, prompt = load_translation_lm(cfg.model, shots=cfg.shots, device=cfg.device, corpus=cfg.corpus)
    name = info.name
    if cfg.hso_steps:
        from models.hso import HSOLM

        if info.is_encoder_decoder:
            raise ConfigError(f"hso_steps: HSO optimises a decoder-only model's prompt cache; {cfg.model} is an "
                              "encoder-decoder model")
        lm = HSOLM.over(lm, lr=cfg.hso_lr, steps_per_segment=cfg.hso_steps)
        name = f"{name}+hso(lr={cfg.hso_lr:g},steps={cfg.hso_steps})"
    sources = Sources(cfg.corpus, cfg.split, cfg.n, cfg.max_source_tokens, cfg.max_len_ratio, cfg.max_len)
    return Work(lm, tok, name, f"{cfg.corpus}/{cfg.split}", translation_examples(sources, tok, prompt, limit),
                methods(cfg, lm))


def main(cfg: ModesConfig, out_dir: Path, *, limit: int | None = None, argv: list[str] | None = None,
         ray: RayOptions | None = None) -> Path:
    from experiments.report import finish_run

    with RunDir(out_dir, dataclasses.asdict(cfg) | {"limit": limit}, argv or sys.argv) as run:
        execute(run, partial(work, cfg, limit), ray=ray)
        return finish_run(run.path)
