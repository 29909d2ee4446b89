"""One module per paper figure, ``plot(df) -> Figure`` over result tables (DESIGN.md §7).

Empty so far: figures are built by the issue "Results, metrics, statistics, figures and the paper".
"""
