"""Benchmark: ``decoding.conditional_beam_search`` against ``decoding.beam_search`` at the same beam size.

    python benchmarks/conditional_beam.py [--model bible-de-en-marian] [--n 20] [--beam-sizes 5 50 200]

The model, its attribute A and its classifier are those of ``lq run conditional`` (experiments/configs/
conditional.toml; the classifier is trained first if it is not cached, which takes minutes). For the first ``n``
test sources of the experiment, each beam size k runs plain beam search and conditional beam search on every
source, alternating which goes first, after an untimed warm-up; the script prints per k the total wall time of
each, their ratio (conditional / beam: the cost of conditioning; the issue's target is <= 1.5), the median
per-source ratio, the forward calls of each, and the classifier's batched calls and scored prefixes.

Wall times are CPU wall-clock and sensitive to other load on the machine; the script prints the load average
before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from decoding import beam_search, conditional_beam_search  # noqa: E402
from experiments import conditional  # noqa: E402
from experiments.config import load_config  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="bible-de-en-marian")
    ap.add_argument("--n", type=int, default=20, help="test sources")
    ap.add_argument("--beam-sizes", type=int, nargs="+", default=[5, 50, 200])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    cfg = load_config(conditional.ConditionalConfig, "conditional", overrides={
        "models": [args.model], "n": args.n, "chat_n": args.n})
    task = conditional.load_task(cfg, args.model, None)
    classifier, folder = conditional.train_or_load_classifier(cfg, task)
    print(f"model {args.model}, A = {task.attribute.name}, classifier {folder}, candidates {cfg.candidates}, "
          f"{len(task.examples)} sources, torch threads {torch.get_num_threads()}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")

    def plain(ex: conditional.Example, k: int) -> tuple[float, int, int]:
        res = beam_search(task.lm, ex.source_ids, beam_size=k, max_len=ex.max_len)
        return res.stats.wall_s, res.stats.forward_calls, 0

    def cond(ex: conditional.Example, k: int) -> tuple[float, int, int]:
        res = conditional_beam_search(task.lm, ex.source_ids, attribute=task.attribute, classifier=classifier,
                                      beam_size=k, max_len=ex.max_len, candidates=cfg.candidates)
        return res.stats.wall_s, res.stats.forward_calls, res.stats.extra["classifier_rows"]

    plain(task.examples[0], 2)
    cond(task.examples[0], 2)  # warm-up, untimed
    header = ("k", "beam s", "conditional s", "ratio (total)", "ratio (median/source)", "beam forwards",
              "conditional forwards", "classifier prefixes")
    rows = [header]
    for k in args.beam_sizes:
        totals = {"beam": [0.0, 0, 0], "conditional": [0.0, 0, 0]}
        ratios = []
        for i, ex in enumerate(task.examples):
            order = (("beam", plain), ("conditional", cond)) if i % 2 == 0 else (("conditional", cond),
                                                                                   ("beam", plain))
            walls = {}
            for name, run in order:
                wall, forwards, prefixes = run(ex, k)
                walls[name] = wall
                totals[name] = [totals[name][0] + wall, totals[name][1] + forwards, totals[name][2] + prefixes]
            ratios.append(walls["conditional"] / walls["beam"])
        b, c = totals["beam"], totals["conditional"]
        rows.append((str(k), f"{b[0]:.2f}", f"{c[0]:.2f}", f"{c[0] / b[0]:.2f}x", f"{statistics.median(ratios):.2f}x",
                     str(b[1]), str(c[1]), str(c[2])))
        print(f"k={k} done", file=sys.stderr)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        print("  ".join(cell.rjust(w) for cell, w in zip(r, widths, strict=True)))
    print(f"\nload average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
