"""``python -m experiments.corpora [NAME ...]``: what each corpus holds and how long it takes to load."""

from __future__ import annotations

import io
import logging
import sys
import time
from collections.abc import Sequence

from experiments.corpora import CORPORA, SPLITS, CorpusNotAvailableError, load_corpus


def _summary(names: Sequence[str]) -> str:
    out = io.StringIO()
    for name in names:
        t0 = time.perf_counter()
        try:
            df = load_corpus(name)
        except CorpusNotAvailableError as err:
            print(f"{name}: not available: {err}", file=out)
            continue
        seconds = time.perf_counter() - t0
        counts = df["split"].value_counts()
        per_split = ", ".join(f"{s} {counts.get(s, 0)}" for s in SPLITS)
        print(f"{name}: {len(df)} rows ({per_split}); loaded in {seconds:.2f} s", file=out)
        dropped = {k: v for k, v in df.attrs.get("dropped", {}).items() if not isinstance(v, list)}
        if dropped:
            print(f"  dropped: {dropped}", file=out)
    return out.getvalue()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(_summary(sys.argv[1:] or list(CORPORA)), end="")
