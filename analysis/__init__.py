"""Metrics, tidy result tables, statistics and the theory of degenerate modes (DESIGN.md §5).

Empty so far: the analysis layer is built by the issue "Results, metrics, statistics, figures and the paper".
"""

__all__: list[str] = []
