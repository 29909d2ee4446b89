"""One module per paper figure, ``plot(df) -> Figure`` over result tables (DESIGN.md §7).

- ``beam_curse``: corpus BLEU, empty outputs and log-probability against beam size, the exact mode as reference.
- ``search_errors``: share of sources whose beam output is less likely than the certified mode, by beam size.
- ``likelihood_quality``: chrF against likelihood quantile within source, search methods overlaid.
- ``empty_vs_length``: share of empty certified modes against source length, with a logistic fit.
- ``length_conditional``: log-probability and chrF of the mode at each length relative to the reference.
- ``critical_epsilon``: the contamination rate above which the mode turns degenerate, against the population's
  min-entropy; closed form with exact toy searches overlaid (a table from ``experiments.contamination_toy``).

- ``contamination``, ``contamination_length``: degenerate modes of models trained on contaminated data against eps
  (with the closed-form prediction) and against source length.
- ``conditional``: conditional beam search against plain beam and its ablations over beam size: outputs lacking the
  attribute A, log-likelihood with the exact conditional mode as reference, and BLEU (or length), per model.
- ``conditional_winrate``: pairwise win rates by likelihood among outputs with A, per model at its largest beam.
- ``calibration``: reliability diagram and accuracy by prefix position of the attribute classifier (a table from
  ``experiments.conditional``, ``calibration.parquet``).

``render(df, out_dir)`` writes every result-table figure the table supports as PDF and PNG; ``style`` holds the
shared method colours, sizes and rc settings. Figures read tables only (``analysis``), never models or search.
"""

from figures.render import FIGURES, render

__all__ = ["FIGURES", "render"]
