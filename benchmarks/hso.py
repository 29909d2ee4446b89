"""Benchmark: seconds per token of HSO and dynamic evaluation against plain streaming scoring, and peak memory.

    python benchmarks/hso.py [--model smollm2-135m-instruct] [--tokens 1024] [--steps 1 3] [--repeats 2]

One text of ``tokens`` tokens (Wikipedia, dev split) is scored with the settings of ``lq run hso-perplexity``
(segment 32, window 480) by: no adaptation (the baseline), HSO with each of ``steps`` steps per segment, and dynamic
evaluation of all weights and of norms and biases only, ``repeats`` times in alternating order after an untimed
warm-up, in one process; the script prints each method's median seconds per token and its ratio to the baseline.
Peak memory is measured separately, each method in a fresh subprocess that loads the model and then scores the text:
how far its resident memory rises above the loaded model while scoring (sampled every 2 ms). A fresh process is
needed because a process's resident memory never shrinks back to a level a later method could be measured from.

Wall times are CPU wall-clock and sensitive to other load on the machine; the script prints the load average.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from memory import in_fresh_process, rise_mb  # noqa: E402

from experiments.corpora import load_corpus  # noqa: E402
from models import load_model  # noqa: E402
from models.hso import HSO, DynamicEvaluation, NoAdaptation  # noqa: E402


def scorers(model: Any, tok: Any, steps: Sequence[int]) -> dict[str, Any]:
    window = {"segment": 32, "window": 480}
    out = {"none": NoAdaptation(model, tok, **window)}
    out |= {f"hso steps={s}": HSO(model, tok, lr=3e-3, steps_per_segment=s, **window) for s in steps}
    out |= {f"dynamic_eval {p}": DynamicEvaluation(model, tok, lr=3e-5, params=p, **window)
            for p in ("all", "norms_biases")}
    return out


def text_ids(tok: Any, tokens: int) -> list[int]:
    text = " ".join(load_corpus("wikipedia", split="dev")["text"])
    return list(tok(text)["input_ids"][:tokens])


def peak_mb(model_name: str, tokens: int, method: str, steps: Sequence[int]) -> float:
    """How far the resident memory of a fresh process that has loaded the model rises while ``method`` scores the
    text (MB)."""
    return float(in_fresh_process(__file__, "child", model_name, tokens, method, list(steps)))


def child(model_name: str, tokens: int, method: str, steps: list[int]) -> float:
    model, tok, _ = load_model(model_name)
    ids = text_ids(tok, tokens)
    scorer = scorers(model, tok, steps)[method]
    gc.collect()
    return rise_mb(lambda: scorer.score_text(ids))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 3])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-memory", action="store_true", help="skip the subprocess peak-memory measurement")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    model, tok, _ = load_model(args.model)
    ids = text_ids(tok, args.tokens)
    methods = scorers(model, tok, args.steps)
    methods["none"].score_text(ids[:128])  # warm-up
    times: dict[str, list[float]] = {name: [] for name in methods}
    for r in range(args.repeats):
        for name in (list(methods) if r % 2 == 0 else list(methods)[::-1]):
            t0 = time.perf_counter()
            methods[name].score_text(ids)
            times[name].append((time.perf_counter() - t0) / (len(ids) - 1))
    base = statistics.median(times["none"])
    memory: dict[str, float] = {}
    if not args.no_memory:
        memory = {name: peak_mb(args.model, args.tokens, name, args.steps) for name in methods}
    print(f"{args.model}, {len(ids)} tokens, segment 32, window 480, {args.threads} threads, median of "
          f"{args.repeats}")
    print(f"{'method':<24} {'ms/token':>9} {'x none':>7} {'peak MB over the loaded model':>30}")
    for name, ts in times.items():
        ms = 1000 * statistics.median(ts)
        mem = f"{memory[name]:.0f}" if memory else "-"
        print(f"{name:<24} {ms:9.1f} {statistics.median(ts) / base:7.2f} {mem:>30}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
