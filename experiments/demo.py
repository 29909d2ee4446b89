"""Exact vs beam search on a real instruction-tuned model (the default job of ``lq run`` for now).

For each prompt (chat template applied): greedy, beam k in ``beam_sizes``, the exact mode, and the exact mode
among non-empty outputs (``MinLength(1)``), each exact search under a time budget. Prints a table and writes
one row per (prompt, method, rank) to the run directory's rows.jsonl.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from decoding import Hypothesis, MinLength, SearchResult, beam_search, exact_search, greedy_search
from experiments.rundir import RunDir


@dataclass(frozen=True)
class DemoConfig:
    model: str = "smollm2-135m-instruct"
    prompts: list[str] = field(default_factory=list)
    beam_sizes: list[int] = field(default_factory=lambda: [1, 4, 16])
    max_len: int = 40
    max_seconds: float = 60.0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not self.prompts or any(not p.strip() for p in self.prompts):
            raise SystemExit("prompts must be a non-empty list of non-empty strings")
        if self.max_len < 1:
            raise SystemExit(f"max_len must be >= 1, got {self.max_len}")
        if self.max_seconds <= 0:
            raise SystemExit(f"max_seconds must be > 0 (exact search on open prompts needs a budget), "
                             f"got {self.max_seconds}")
        if not self.beam_sizes or min(self.beam_sizes) < 1:
            raise SystemExit(f"beam_sizes must be positive integers, got {self.beam_sizes}")


Search = Callable[[Any, list[int]], SearchResult]


def methods(cfg: DemoConfig) -> dict[str, tuple[dict[str, Any], Search]]:
    """name -> (params, search); params are recorded in every row."""
    exact = {"max_len": cfg.max_len, "max_seconds": cfg.max_seconds}
    out: dict[str, tuple[dict[str, Any], Search]] = {
        "greedy": ({"max_len": cfg.max_len}, lambda lm, ids: greedy_search(lm, ids, max_len=cfg.max_len))}
    for k in cfg.beam_sizes:
        out[f"beam{k}"] = ({"beam_size": k, "max_len": cfg.max_len},
                           lambda lm, ids, k=k: beam_search(lm, ids, beam_size=k, max_len=cfg.max_len))
    out["exact"] = (exact, lambda lm, ids: exact_search(lm, ids, **exact))
    out["exact_nonempty"] = (exact | {"constraints": ["MinLength(1)"]},
                             lambda lm, ids: exact_search(lm, ids, **exact, constraints=[MinLength(1)]))
    return out


def main(cfg: DemoConfig, out_dir: Path, *, limit: int | None = None, argv: list[str] | None = None) -> Path:
    from models import load_lm
    from models.chat import prompt_ids

    run = RunDir(out_dir, dataclasses.asdict(cfg) | {"limit": limit}, argv or sys.argv)
    lm, tok, info = load_lm(cfg.model, device=cfg.device)
    prompts = cfg.prompts[:limit] if limit else cfg.prompts
    todo = [(i, p, name, params, search) for i, p in enumerate(prompts)
            for name, (params, search) in methods(cfg).items() if f"{i}/{name}" not in run.done]
    for i, prompt, name, params, search in tqdm(todo, desc="searching", unit="search", disable=not todo):
        ids = prompt_ids(tok, prompt)
        res = search(lm, ids)
        hyps: list[Hypothesis | None] = list(res.hypotheses) or [None]
        rows = [{
            "signature": lm.signature() | {"method": name, "params": params}, "model": info.name,
            "dataset": "demo-prompts", "example_id": i, "source": prompt, "reference": None, "method": name,
            "params": params, "rank": rank,
            "text": tok.decode(h.token_ids, skip_special_tokens=True) if h else None,
            "token_ids": list(h.token_ids) if h else [], "n_tokens": h.length if h else None,
            "finished": h.finished if h else None, "logprob": h.logprob if h else None,
            "score": h.score if h else None, "certified": res.certified, "upper_bound": res.stats.upper_bound,
            "nodes": res.stats.nodes, "forward_calls": res.stats.forward_calls, "wall_s": res.stats.wall_s,
        } for rank, h in enumerate(hyps)]
        run.append(f"{i}/{name}", rows)
    print_table(run.rows)
    return run.path


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"\n{'prompt':<36} {'method':<15} {'logprob':>8} {'certified':>9} {'nodes':>6} {'sec':>6}  text")
    for r in sorted((r for r in rows if r["rank"] == 0), key=lambda r: r["example_id"]):
        exact = r["method"].startswith("exact")
        cert = ("yes" if r["certified"] else f"NO (<={r['upper_bound']:.2f})") if exact else "-"
        lp = f"{r['logprob']:.3f}" if r["logprob"] is not None else "none"
        text = "(empty)" if r["text"] == "" else repr(r["text"]) if r["text"] is not None else "(none found)"
        print(f"{r['source'][:36]:<36} {r['method']:<15} {lp:>8} {cert:>9} {r['nodes']:>6} {r['wall_s']:>6.1f}  "
              f"{text[:70]}")
