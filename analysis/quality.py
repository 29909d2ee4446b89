"""Translation quality with sacreBLEU 2.6.0 (Post, 2018): BLEU (Papineni et al., 2002), chrF (Popović, 2015) and
TER (Snover et al., 2006), each with sacreBLEU's default settings (BLEU: 13a tokenizer, mixed case).

Every row gets a sentence score and its per-segment sufficient statistics: exactly the rows that sacreBLEU's
``metric._extract_corpus_statistics(hyps, [refs])`` returns. Statistics add up over segments, so
:func:`corpus_score` recomputes sacreBLEU's corpus score on any subset of rows (a method, a length bucket, a
bootstrap resample) without re-scoring text, and equals ``sacrebleu.corpus_bleu/corpus_chrf/corpus_ter``.

Two conventions to know when reading the numbers:

- Sentence BLEU (the ``bleu`` column) is sacreBLEU's ``sentence_bleu``: exp smoothing with ``effective_order=True``.
  Corpus BLEU from the statistics uses ``effective_order=False`` like ``corpus_bleu``, so the corpus score of a
  single segment can differ from its sentence score; that is sacreBLEU's own behaviour, not an error.
- A row without output (``text`` None) is scored as the empty hypothesis ``""``: an empty output is a real, and
  for degenerate modes frequent, answer that must count against quality (BLEU 0, chrF 0, TER 100 for a non-empty
  reference). A row without a reference gets NaN scores and None statistics.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
from sacrebleu.metrics import BLEU, CHRF, TER
from sacrebleu.metrics.base import Metric

__all__ = ["METRICS", "add_quality", "corpus_score", "score_from_totals", "signatures"]

METRICS = ("bleu", "chrf", "ter")

# "sentence_bleu" scores single segments as sacrebleu.sentence_bleu does.
_FACTORIES: dict[str, Callable[..., Metric]] = {
    "bleu": BLEU,
    "sentence_bleu": functools.partial(BLEU, effective_order=True),
    "chrf": CHRF,
    "ter": TER,
}


@functools.cache
def _metric(name: str) -> Metric:
    if name not in _FACTORIES:
        raise ValueError(f"unknown metric {name!r}; expected one of {METRICS}")
    return _FACTORIES[name]()


def signatures() -> dict[str, str]:
    """sacreBLEU signature of each metric: keys ``bleu`` (corpus), ``sentence_bleu`` (the ``bleu`` column), ``chrf``,
    ``ter``. Our rows always have one reference, hence ``nrefs:1``."""
    # sacreBLEU only knows the number of references once some are cached; one dummy reference sets it.
    return {name: str(factory(references=[["."]]).get_signature()) for name, factory in _FACTORIES.items()}


def score_from_totals(metric: str, totals: Sequence[float] | np.ndarray) -> float:
    """The score of already summed statistics (any numeric dtype; bootstrap code passes float32 as sacreBLEU does)."""
    # sacreBLEU's own bootstrap passes numpy arrays here too; its annotation says list.
    return float(_metric(metric)._compute_score_from_stats(totals).score)  # type: ignore[arg-type]


def corpus_score(metric: str, stats: Iterable[Sequence[float]]) -> float:
    """sacreBLEU's corpus score from per-segment statistics rows (``bleu_stats``, ``chrf_stats`` or ``ter_stats``).

    Sums in float64, exact for integer counts below 2**53, so the result equals sacreBLEU's own integer sums.
    """
    rows = [np.asarray(row, dtype=np.float64) for row in stats]
    if not rows:
        raise ValueError(f"corpus_score({metric!r}) needs at least one segment; got none")
    return score_from_totals(metric, np.sum(rows, axis=0))


def _segment_stats(metric: str, hyps: list[str], refs: list[str]) -> list[list[float]]:
    return [list(row) for row in _metric(metric)._extract_corpus_statistics(hyps, [refs])]


def add_quality(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` with ``bleu, chrf, ter`` (sentence scores) and ``bleu_stats, chrf_stats, ter_stats``."""
    pairs = [(text if isinstance(text, str) else "", ref if isinstance(ref, str) else None)
             for text, ref in zip(df["text"], df["reference"], strict=True)]
    # Samples and length-conditional runs repeat outputs; each distinct (hypothesis, reference) is scored once.
    unique = list(dict.fromkeys((hyp, ref) for hyp, ref in pairs if ref is not None))
    hyps = [hyp for hyp, _ in unique]
    refs = [ref for _, ref in unique]
    out = df.copy()
    for metric in METRICS:
        stats: dict[tuple[str, str | None], list[float]] = (
            dict(zip(unique, _segment_stats(metric, hyps, refs), strict=True)) if unique else {})
        sentence = _metric("sentence_bleu" if metric == "bleu" else metric)
        scores = {pair: float(sentence._compute_score_from_stats(row).score) for pair, row in stats.items()}
        out[metric] = [scores.get(pair, np.nan) for pair in pairs]
        out[f"{metric}_stats"] = pd.Series([stats.get(pair) for pair in pairs], index=df.index, dtype=object)
    return out
