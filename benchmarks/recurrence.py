"""Benchmark: peak memory of every method of ``lq run recurrence`` reading one held-out piece.

    python benchmarks/recurrence.py [--module smollm2-135m-recurrence] [--domain wikipedia] [--threads 1]

The run's table reports the state each method keeps (cached keys and values at their largest, plus the memory
slots) computed from shapes; this measures what reading actually costs: for each method, a fresh process loads
the model, then reads the first test piece of ``context`` tokens of ``domain`` exactly as the experiment does
(``experiments.recurrence.read``), and the script prints how far its resident memory rose above the loaded model
(activations, logits and allocator slack included), with the wall time of that read.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from memory import in_fresh_process, rise_mb  # noqa: E402

from experiments.recurrence import RecurrenceConfig, methods, pieces, read  # noqa: E402
from models.recurrence import load_recurrent  # noqa: E402


def child(module: str, domain: str, name: str, threads: int) -> list[float]:
    """[peak MB over the loaded model, seconds] of ``name`` reading the first test piece of ``domain``."""
    torch.set_num_threads(threads)
    cfg = RecurrenceConfig(module=module, domains=[domain])
    rec, _ = load_recurrent(module)
    method = next(m for m in methods(cfg) if m.name == name)
    ids = pieces(rec.tokenizer, domain, cfg)[0][1]
    gc.collect()
    t0 = time.perf_counter()
    peak = rise_mb(lambda: read(rec, method, ids, cfg.sliding_stride, cfg.sink_tokens))
    return [peak, time.perf_counter() - t0]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--module", default=RecurrenceConfig.module)
    ap.add_argument("--domain", default="wikipedia")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    cfg = RecurrenceConfig(module=args.module, domains=[args.domain])
    print(f"load average before: {os.getloadavg()[0]:.2f}; one {cfg.context}-token test piece of {args.domain}, "
          f"{args.threads} thread(s), each method in a fresh process")
    print(f"{'method':<24} {'peak MB over the loaded model':>30} {'read s':>8}")
    for m in methods(cfg):
        peak, seconds = in_fresh_process(__file__, "child", args.module, args.domain, m.name, args.threads)
        print(f"{m.name:<24} {peak:30.0f} {seconds:8.1f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
