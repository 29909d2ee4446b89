"""The contamination theory (``analysis.theory``) checked by exact search on toy distributions whose modes are known
(Yoshida 2024, *Making the Most of your Model*; Yoshida, Goyal & Gimpel 2024, "MAP's not dead yet", ACL).

Each ``ToyPopulation`` is an explicit distribution P_pop over outputs (token tuples without EOS, EOS = 0), with the
degenerate output removed (P_pop(D) = 0). Each noise puts all its mass on one degenerate output (so q = 1): the
empty output, or a copy of the source. For every population, noise and eps a few log-odds steps either side of
the predicted eps* = m / (m + 1), the mixture P = (1 - eps) P_pop + eps Q becomes a ``decoding.TabularLM`` and

- ``exact_search`` finds its mode: Theorem 1 says it is the noise output exactly when eps > eps*;
- ``exact_search`` with the constraint that excludes the noise (``MinLength(1)``, ``NotCopyOfSource``) finds a
  mode of P_pop (Theorem 3 with A = not D), at every eps;
- ``length_conditional_modes`` finds, for every length the population has, a mode of P_pop of that length
  (Theorem 3 with A = "length L"; for copy noise with ``NotCopyOfSource`` too, since the copy has a population
  length).

Outputs are compared by probability, not identity, so ties in a uniform population do not count as disagreements.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import pandas as pd
from scipy.special import expit, logit
from scipy.stats import entropy

from analysis import theory
from decoding import (
    Constraint,
    MinLength,
    NGramLM,
    NotCopyOfSource,
    SearchResult,
    TabularLM,
    exact_search,
    length_conditional_modes,
)

__all__ = ["DEFAULT_POPULATIONS", "LOG_ODDS_OFFSETS", "NOISES", "ToyPopulation", "toy_check"]

Output = tuple[int, ...]
EOS = 0

LOG_ODDS_OFFSETS = (-1.0, -1e-3, 1e-3, 1.0)
"""eps = expit(logit(eps*) + offset): close on both sides of eps*, where the mode must flip, and well away."""

_TIE_TOL = 1e-9
"""Relative tolerance under which two outputs' probabilities tie (float rounding of the chain of marginals)."""


@dataclass(frozen=True)
class ToyPopulation:
    """A population over outputs of tokens 1..``vocab_size``-1 (0 is EOS), by ``kind``:

    - "iid": exactly ``length`` i.i.d. tokens; token 1 has probability ``shape``, the others share the rest
      (``shape`` = 1 / (vocab_size - 1) is uniform), so max P_pop = shape^length (Corollary 4);
    - "tabular": ``TabularLM.random`` over outputs of at most ``length`` tokens, Dirichlet concentration ``shape``;
    - "ngram": a random bigram ``NGramLM`` (logit temperature ``shape``) restricted to outputs of at most
      ``length`` tokens and renormalised.
    """

    kind: str
    vocab_size: int = 3
    length: int = 3
    shape: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("iid", "tabular", "ngram"):
            raise ValueError(f"kind must be 'iid', 'tabular' or 'ngram', got {self.kind!r}")
        if self.vocab_size < 3 or self.length < 1:
            raise ValueError(f"need vocab_size >= 3 (EOS and two tokens) and length >= 1, got {self.vocab_size}, "
                             f"{self.length}")
        if self.kind == "iid" and not 1 / (self.vocab_size - 1) <= self.shape <= 1:
            raise ValueError(f"an iid population's token-1 probability (shape) must lie in [1/(vocab_size-1), 1] "
                             f"so token 1 is the likeliest, got {self.shape}")
        if self.kind != "iid" and self.shape <= 0:
            raise ValueError(f"shape (Dirichlet concentration / logit temperature) must be > 0, got {self.shape}")

    @property
    def source(self) -> Output:
        """The source every search gets, and the output copy noise repeats: the last token, ``length`` times."""
        return (self.vocab_size - 1,) * self.length

    def table(self) -> dict[Output, float]:
        """P_pop before the degenerate output is removed: {output: probability}."""
        tokens = range(1, self.vocab_size)
        if self.kind == "iid":
            others = (1 - self.shape) / (self.vocab_size - 2)
            return {y: math.prod(self.shape if t == 1 else others for t in y)
                    for y in itertools.product(tokens, repeat=self.length)}
        if self.kind == "tabular":
            lm = TabularLM.random(self.vocab_size, self.length, seed=self.seed, concentration=self.shape)
            return dict(lm.table)
        ngram = NGramLM.random(self.vocab_size, 2, seed=self.seed, temperature=self.shape)
        outputs = [y for n in range(self.length + 1) for y in itertools.product(tokens, repeat=n)]
        return {y: math.exp(float(ngram.score(self.source, y + (EOS,)).sum())) for y in outputs}


@dataclass(frozen=True)
class _Noise:
    output: Callable[[ToyPopulation], Output]
    excluded_by: Constraint


NOISES: dict[str, _Noise] = {
    "empty": _Noise(lambda pop: (), MinLength(1)),
    "copy": _Noise(lambda pop: pop.source, NotCopyOfSource()),
}
"""noise name -> the one degenerate output it emits, and the search constraint that excludes it."""

DEFAULT_POPULATIONS: tuple[ToyPopulation, ...] = (
    *(ToyPopulation("iid", 3, n, p) for p in (0.5, 0.7, 0.9) for n in (1, 2, 3, 4, 6, 8)),
    *(ToyPopulation("tabular", v, n, c, seed=s)
      for v, n in ((3, 3), (4, 3), (4, 4)) for c in (0.1, 1.0) for s in (0, 1)),
    *(ToyPopulation("ngram", 4, 4, t, seed=s) for t in (0.5, 2.0) for s in (0, 1)),
)
"""Populations from one output (min-entropy 0) to 256 equally likely ones (min-entropy 5.5 nats): i.i.d. tokens of
growing length and skew, random tables and bigram models."""


def _has_length(y: tuple[int, ...], n: int) -> bool:
    return len(y) == n


def _is_mode_of(pop: dict[Output, float], y: Output | None) -> bool:
    """Whether ``y`` is a most probable output of ``pop`` (ties within ``_TIE_TOL`` count)."""
    return y is not None and pop.get(y, 0.0) >= theory.mode(pop)[1] * (1 - _TIE_TOL)


def _output(result: SearchResult) -> Output | None:
    best = result.best
    return tuple(best.token_ids[:best.length]) if best is not None else None


def _check(pop: dict[Output, float], noise: Output, constraint: Constraint, eps: float,
           source: Output, vocab_size: int, max_len: int) -> dict[str, Any]:
    lm = TabularLM(theory.mixture(pop, {noise: 1.0}, eps), vocab_size, EOS)
    found = exact_search(lm, source, max_len=max_len)
    away = exact_search(lm, source, max_len=max_len, constraints=[constraint])
    lengths = sorted({len(y) for y in pop})
    per_length = length_conditional_modes(lm, source, lengths=lengths, constraints=[constraint])
    length_ok = all(_is_mode_of(theory.conditional(pop, partial(_has_length, n=n)), _output(per_length[n]))
                    for n in lengths)
    best = found.best
    return {
        "mode_is_degenerate": _output(found) == noise,
        "mode_logprob": best.logprob if best is not None else -math.inf,
        "conditional_mode_is_population": _is_mode_of(pop, _output(away)),
        "length_conditional_is_population": length_ok,
        "certified": found.certified and away.certified and all(r.certified for r in per_length.values()),
        "nodes": found.stats.nodes + away.stats.nodes + per_length[lengths[0]].stats.nodes,
    }


def toy_check(populations: Sequence[ToyPopulation] = DEFAULT_POPULATIONS, noises: Sequence[str] = tuple(NOISES),
              log_odds_offsets: Sequence[float] = LOG_ODDS_OFFSETS) -> pd.DataFrame:
    """One row per (population, noise, eps): the closed-form prediction beside what exact search finds.

    Columns: the population (``kind, vocab_size, length, shape, seed``), its ``entropy`` and ``min_entropy``
    (nats) and ``pop_max_prob`` m; ``noise`` and ``noise_max_prob`` q; ``log_odds_offset``, ``eps``, ``eps_star``
    and ``predicted_degenerate`` (Theorem 1); then from search ``mode_is_degenerate``, ``mode_logprob``,
    ``conditional_mode_is_population``, ``length_conditional_is_population`` (Theorem 3), ``certified`` (every
    search of the row) and ``nodes`` (prefixes expanded by the three searches)."""
    unknown = set(noises) - set(NOISES)
    if unknown:
        raise ValueError(f"unknown noise {sorted(unknown)}; known: {sorted(NOISES)}")
    rows = []
    for spec in populations:
        raw = spec.table()
        for name in noises:
            noise = NOISES[name].output(spec)
            pop = theory.conditional(raw, partial(operator.ne, noise))
            m, q = theory.mode(pop)[1], 1.0
            eps_star = float(theory.critical_epsilon(m, q))
            for offset in log_odds_offsets:
                eps = float(expit(logit(eps_star) + offset))
                rows.append({
                    "kind": spec.kind, "vocab_size": spec.vocab_size, "length": spec.length, "shape": spec.shape,
                    "seed": spec.seed, "entropy": float(entropy(list(pop.values()))), "min_entropy": math.log(1 / m),
                    "pop_max_prob": m, "noise": name, "noise_max_prob": q, "log_odds_offset": offset, "eps": eps,
                    "eps_star": eps_star, "predicted_degenerate": bool(theory.mixture_mode_is_degenerate(m, q, eps)),
                    **_check(pop, noise, NOISES[name].excluded_by, eps, spec.source, spec.vocab_size, spec.length),
                })
    return pd.DataFrame(rows)
