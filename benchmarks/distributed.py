"""Benchmark: ``lq run modes`` on Ray actors (``experiments.distributed``) against the in-process loop.

    python benchmarks/distributed.py [--model bible-de-en-marian] [--n 8] [--small 4] [--large 24]

Starts one local Ray (2 CPUs, timed apart), then, in this process:

1. throughput: the modes experiment on the first ``n`` test sources (greedy, beam 1/5/10, exact searches bounded by
   nodes so every run does the same work, 10 samples) in-process with 2 torch threads, and on 2 Ray workers of 1
   thread each (and, for reference, in-process with 1 thread); wall time of each (model loads included: the
   driver's, and each actor's), the ratios to the 2-thread in-process run, and whether Ray wrote the same rows;
2. overhead per unit: cheap units (greedy, beam 1, exact searches of 1 node, no samples) for ``small`` and
   ``large`` sources, in-process with 1 thread and on 1 Ray worker of 1 thread; the difference of the slopes (seconds
   per unit between the two sizes) is what Ray adds to each unit (a task round trip, pickling rows), the difference
   of the intercepts what it adds once (actor start, model load in the actor).

Wall times are CPU wall-clock and sensitive to other load on the machine; the script prints the load average
before and after.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments import modes  # noqa: E402
from experiments.config import load_config  # noqa: E402
from experiments.distributed import RayOptions  # noqa: E402
from experiments.loop import execute  # noqa: E402
from experiments.rundir import RunDir  # noqa: E402


def run(cfg: modes.ModesConfig, limit: int, ray: RayOptions | None, out: Path) -> tuple[float, int, list[Any]]:
    """Seconds and units of the searches of one fresh run (model loads included; the report and figures of
    ``modes.main`` left out), and its rows' keys and texts."""
    with RunDir(out, {"benchmark": str(out)}, ["benchmark"]) as rd:
        start = time.perf_counter()
        execute(rd, partial(modes.work, cfg, limit), ray=ray)
        seconds = time.perf_counter() - start
        return seconds, len(rd.done), sorted((r["example_id"], r["method"], r["rank"], r["text"]) for r in rd.rows)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="bible-de-en-marian")
    ap.add_argument("--n", type=int, default=8, help="sources of the throughput comparison")
    ap.add_argument("--small", type=int, default=4, help="sources of the smaller overhead run")
    ap.add_argument("--large", type=int, default=24, help="sources of the larger overhead run")
    args = ap.parse_args(argv)
    import ray

    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; torch {torch.__version__}, "
          f"ray {ray.__version__}")
    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    print(f"ray.init(num_cpus=2): {time.perf_counter() - start:.1f} s (once per driver)")
    full = load_config(modes.ModesConfig, "modes", overrides={
        "model": args.model, "n": args.n, "beam_sizes": [1, 5, 10], "max_seconds": 600.0, "max_nodes": 300,
        "n_samples": 10})
    cheap = load_config(modes.ModesConfig, "modes", overrides={
        "model": args.model, "n": args.large, "beam_sizes": [1], "max_seconds": 600.0, "max_nodes": 1,
        "length_offsets": [0], "n_samples": 0})
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        torch.set_num_threads(2)
        t_in, units, rows_in = run(full, args.n, None, out / "in-process")
        t_ray, _, rows_ray = run(full, args.n, RayOptions("local", workers=2, threads=1), out / "ray")
        torch.set_num_threads(1)
        t_one, _, _ = run(full, args.n, None, out / "in-process-1")
        print(f"\nthroughput, {units} units ({args.n} sources x {units // args.n} methods):")
        print(f"  in-process, 2 threads      {t_in:7.1f} s   (baseline)")
        print(f"  Ray, 2 workers x 1 thread  {t_ray:7.1f} s   ratio Ray / in-process {t_ray / t_in:.2f}")
        print(f"  in-process, 1 thread       {t_one:7.1f} s   ratio {t_one / t_in:.2f}")
        print(f"  same rows (keys and texts): {rows_in == rows_ray}")

        times: dict[tuple[str, int], float] = {}
        counts: dict[int, int] = {}
        for n in (args.small, args.large):
            for name, opts in (("in-process", None), ("ray", RayOptions("local", workers=1, threads=1))):
                times[name, n], counts[n], _ = run(cheap, n, opts, out / f"cheap-{name}-{n}")
        du = counts[args.large] - counts[args.small]
        slope = {name: (times[name, args.large] - times[name, args.small]) / du for name in ("in-process", "ray")}
        fixed = {name: times[name, args.small] - slope[name] * counts[args.small] for name in slope}
        print(f"\noverhead, cheap units (1 thread, 1 worker): {counts[args.small]} and {counts[args.large]} units")
        for name in slope:
            print(f"  {name:<11} {times[name, args.small]:6.2f} s / {times[name, args.large]:6.2f} s: "
                  f"{1000 * slope[name]:6.1f} ms per unit, {fixed[name]:5.2f} s fixed")
        print(f"  Ray adds {1000 * (slope['ray'] - slope['in-process']):.1f} ms per unit "
              f"(ratio {slope['ray'] / slope['in-process']:.2f}) and {fixed['ray'] - fixed['in-process']:.2f} s once")
    ray.shutdown()
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
