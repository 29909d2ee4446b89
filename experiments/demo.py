"""``lq run demo``: exact vs beam search on a real instruction-tuned model, a few short chat prompts.

For each prompt (chat template applied): greedy, beam k in ``beam_sizes`` (every beam hypothesis kept), the exact
mode, and the exact mode among non-empty outputs (``MinLength(1)``), each exact search under a time budget. Writes
the run directory like every experiment (rows.jsonl, rows.parquet with metrics, report.md, figures/) and prints
each prompt's outputs.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from analysis import methods as method_families
from decoding import Constraint, MinLength, SearchResult, beam_search, exact_search, greedy_search
from experiments.config import check
from experiments.loop import Example, Method, Work, execute
from experiments.rundir import RunDir

if TYPE_CHECKING:
    from experiments.distributed import RayOptions


@dataclass(frozen=True)
class DemoConfig:
    model: str = "smollm2-135m-instruct"
    prompts: list[str] = field(default_factory=list)
    beam_sizes: list[int] = field(default_factory=lambda: [1, 4, 16])
    max_len: int = 40
    max_seconds: float = 60.0
    device: str = "cpu"

    def __post_init__(self) -> None:
        check("demo", {
            "prompts must be a non-empty list of non-empty strings": bool(self.prompts)
            and all(p.strip() for p in self.prompts),
            "max_len must be >= 1": self.max_len >= 1,
            "max_seconds must be > 0 (exact search on open prompts needs a budget)": self.max_seconds > 0,
            "beam_sizes must be positive integers": bool(self.beam_sizes) and min(self.beam_sizes) >= 1,
        })


def methods(cfg: DemoConfig, lm: Any) -> list[Method]:
    budget = {"budget_s": cfg.max_seconds}

    def beam(ex: Example, k: int) -> SearchResult:
        return beam_search(lm, ex.source_ids, beam_size=k, max_len=ex.max_len)

    def exact(ex: Example, constraints: Sequence[Constraint] = ()) -> SearchResult:
        return exact_search(lm, ex.source_ids, max_len=ex.max_len, constraints=constraints,
                            max_seconds=cfg.max_seconds)

    return [
        Method("greedy", {}, lambda ex: greedy_search(lm, ex.source_ids, max_len=ex.max_len)),
        *(Method("beam", {"beam_size": k}, partial(beam, k=k)) for k in cfg.beam_sizes),
        Method("exact", budget, exact),
        Method("exact_nonempty", budget | {"constraints": "MinLength(1)"}, partial(exact, constraints=[MinLength(1)])),
    ]


def work(cfg: DemoConfig, limit: int | None) -> Work:
    """The model, its prompts and methods: built where the searches run (this process, or each Ray worker)."""
    from models import load_lm
    from models.chat import prompt_ids

    lm, tok, info = load_lm(cfg.model, device=cfg.device)
    prompts = cfg.prompts[:limit] if limit else cfg.prompts
    examples = [Example(example_id=str(i), source=p, reference=None, source_ids=prompt_ids(tok, p),
                        source_tokens=len(tok(p, add_special_tokens=False)["input_ids"]), reference_tokens=None,
                        max_len=cfg.max_len) for i, p in enumerate(prompts)]
    return Work(lm, tok, info.name, "demo-prompts", examples, methods(cfg, lm))


def main(cfg: DemoConfig, out_dir: Path, *, limit: int | None = None, argv: list[str] | None = None,
         ray: RayOptions | None = None) -> Path:
    from experiments.report import finish_run

    with RunDir(out_dir, dataclasses.asdict(cfg) | {"limit": limit}, argv or sys.argv) as run:
        execute(run, partial(work, cfg, limit), ray=ray)
        path = finish_run(run.path)
        print_outputs(pd.read_parquet(path / "rows.parquet"))
        return path


def print_outputs(df: pd.DataFrame) -> None:
    """Each prompt's rank-0 output of every method, with its log-probability and, for exact search, certificate."""
    print(f"\n{'prompt':<36} {'method':<15} {'logprob':>8} {'certified':>9} {'nodes':>6} {'sec':>6}  text")
    top = df[df["rank"] == 0].sort_values("example_id", key=lambda ids: ids.astype(int), kind="stable")
    for r in top.itertuples():
        certifies = method_families.family(str(r.family)).certifies
        cert = ("yes" if r.certified else f"NO (<={r.upper_bound:.2f})") if certifies else "-"
        lp = "none" if pd.isna(r.logprob) else f"{r.logprob:.3f}"
        text = "(none found)" if pd.isna(r.text) else "(empty)" if r.text == "" else repr(r.text)
        print(f"{r.source[:36]:<36} {r.method:<15} {lp:>8} {cert:>9} {r.nodes:>6} {r.wall_s:>6.1f}  {text[:70]}")
