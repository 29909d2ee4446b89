"""Metrics, tidy result tables, statistics and the theory of degenerate modes (DESIGN.md §5).

- ``analysis.degeneracy``: empty, length ratios, seq-rep-n, rep-w, distinct-n, longest repeat, copies, ``degenerate``.
- ``analysis.quality``: sacrebleu BLEU/chrF/TER per segment with sufficient statistics; ``corpus_score``.
- ``analysis.likelihood``: per-token log-prob, rank among a source's outputs, search errors.
- ``analysis.frames``: the result schema, JSONL to typed parquet with metrics, ``load_runs``.
- ``analysis.stats``: bootstrap/Wilson CIs, paired bootstrap, rank correlations, binned curves, logistic fits.
- ``analysis.theory``: the contamination argument in closed form (critical epsilon, TV/KL, conditioning).

No module here imports torch.
"""

__all__ = ["degeneracy", "frames", "likelihood", "quality", "stats", "theory"]
