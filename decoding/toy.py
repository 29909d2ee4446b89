"""Exact-probability toy language models with known modes, for tests and for the theory of degenerate modes.

- ``TabularLM``: an explicit distribution over finished sequences; next-token probabilities are exact
  marginals, so every search runs on a distribution whose mode is known by inspection (``TabularLM.mode``).
- ``NGramLM``: an n-gram model whose context starts with the source's last tokens (so sources matter),
  randomly parameterised by ``NGramLM.random``.
- ``ExactClassifier``: the exact q(A | x, prefix) of an attribute under any model, by enumeration, for testing
  conditional beam search.

States are tuples of prefixes; probabilities are float64.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from decoding.attributes import Attribute, source_content
from decoding.protocol import LanguageModel, as_ids
from decoding.types import SearchInputError
from decoding.validate import integer, token_id, token_ids


@dataclass
class ToyState:
    source: tuple[int, ...]
    prefixes: list[tuple[int, ...]]
    logprobs: Tensor  # (n, V) float64


class _ToyBase:
    eos_id: int
    vocab_size: int
    masked_ids: tuple[int, ...] = ()

    def _next(self, source: tuple[int, ...], prefix: tuple[int, ...]) -> Tensor:
        raise NotImplementedError

    def _rows(self, source: tuple[int, ...], prefixes: list[tuple[int, ...]]) -> ToyState:
        lp = torch.stack([self._next(source, p) for p in prefixes]) if prefixes else torch.zeros(
            0, self.vocab_size, dtype=torch.float64)
        return ToyState(source, prefixes, lp)

    def start(self, source_ids: Sequence[int]) -> ToyState:
        return self._rows(as_ids(source_ids), [()])

    def logprobs(self, state: ToyState) -> Tensor:
        return state.logprobs

    def extend(self, state: ToyState, tokens: Tensor) -> ToyState:
        return self._rows(state.source, [p + (int(t),) for p, t in zip(state.prefixes, tokens.tolist(),
                                                                         strict=True)])

    def select(self, state: ToyState, rows: Tensor) -> ToyState:
        return ToyState(state.source, [state.prefixes[i] for i in rows.tolist()], state.logprobs[rows])

    def without_logprobs(self, state: ToyState) -> ToyState:
        return ToyState(state.source, state.prefixes, state.logprobs.new_empty(len(state.prefixes), 0))

    def concat(self, states: Sequence[ToyState]) -> ToyState:
        return ToyState(states[0].source, [p for s in states for p in s.prefixes],
                        torch.cat([s.logprobs for s in states]))

    def score(self, source_ids: Sequence[int], target_ids: Sequence[int]) -> Tensor:
        source, target = as_ids(source_ids), as_ids(target_ids, "target_ids")
        return torch.stack([self._next(source, target[:i])[t] for i, t in enumerate(target)]) if target \
            else torch.zeros(0, dtype=torch.float64)

    def signature(self) -> dict[str, Any]:
        return {"model": type(self).__name__, "eos_id": self.eos_id, "masked_ids": list(self.masked_ids),
                "dtype": "float64"}


class TabularLM(_ToyBase):
    """P(y) given explicitly for finished outputs y (token tuples without EOS); the source is ignored."""

    def __init__(self, table: Mapping[tuple[int, ...], float], vocab_size: int, eos_id: int):
        self.vocab_size = integer("vocab_size", vocab_size, minimum=1)
        self.eos_id = token_id("eos_id", eos_id, self.vocab_size)
        keys = [token_ids("table key", y, self.vocab_size) for y in table]
        total = sum(table.values())
        if not table or total <= 0:
            raise SearchInputError("a TabularLM needs at least one sequence with positive probability")
        if any(self.eos_id in y for y in keys):
            raise SearchInputError("table keys are outputs without EOS; EOS is appended implicitly")
        self.table = {y: p / total for y, p in zip(keys, table.values(), strict=True) if p > 0}
        self._mass: dict[tuple[int, ...], float] = defaultdict(float)
        for y, p in self.table.items():
            for i in range(len(y) + 1):
                self._mass[y[:i]] += p

    @classmethod
    def random(cls, vocab_size: int, max_len: int, *, seed: int, concentration: float = 0.3) -> TabularLM:
        """Dirichlet(concentration) weights on every sequence of non-EOS tokens (EOS = 0) of length <= max_len."""
        seqs = [y for n in range(max_len + 1) for y in itertools.product(range(1, vocab_size), repeat=n)]
        w = np.random.default_rng(seed).gamma(concentration, size=len(seqs))
        return cls(dict(zip(seqs, w.tolist(), strict=True)), vocab_size, 0)

    def mode(self) -> tuple[tuple[int, ...], float]:
        y = max(self.table, key=lambda k: (self.table[k], tuple(-t for t in k)))
        return y, math.log(self.table[y])

    def _next(self, source: tuple[int, ...], prefix: tuple[int, ...]) -> Tensor:
        denom = self._mass.get(prefix, 0.0)
        probs = torch.zeros(self.vocab_size, dtype=torch.float64)
        if denom > 0:
            for t in range(self.vocab_size):
                probs[t] = self.table.get(prefix, 0.0) if t == self.eos_id else self._mass.get(prefix + (t,), 0.0)
            probs /= denom
        else:
            probs[self.eos_id] = 1.0  # unreachable prefix: any normalised choice keeps the model well defined
        return probs.log()


class NGramLM(_ToyBase):
    """p(y_t | context) from a table over the previous ``order - 1`` tokens of source + output, padded with EOS."""

    def __init__(self, logprobs: Tensor, eos_id: int, masked_ids: Sequence[int] = ()):
        self.order = logprobs.dim()
        self.vocab_size = int(logprobs.shape[-1])
        self.eos_id = token_id("eos_id", eos_id, self.vocab_size)
        self.masked_ids = token_ids("masked_ids", masked_ids, self.vocab_size)
        table = logprobs.double().clone()
        if self.masked_ids:
            table[..., list(self.masked_ids)] = float("-inf")
        self.table = torch.log_softmax(table, dim=-1)

    @classmethod
    def random(cls, vocab_size: int, order: int = 2, *, seed: int, temperature: float = 1.5,
               eos_bias: float = 0.0, masked_ids: Sequence[int] = ()) -> NGramLM:
        g = torch.Generator().manual_seed(seed)
        logits = temperature * torch.randn((vocab_size,) * order, generator=g, dtype=torch.float64)
        logits[..., 0] += eos_bias
        return cls(logits, eos_id=0, masked_ids=masked_ids)

    def _next(self, source: tuple[int, ...], prefix: tuple[int, ...]) -> Tensor:
        k = self.order - 1
        context = ((self.eos_id,) * k + source + prefix)[len(source) + len(prefix):] if k else ()
        return self.table[context] if k else self.table


class ExactClassifier:
    """q(A | x, prefix . v) = the probability that ``lm``, continued from prefix . v, finishes within ``max_len``
    tokens with an output that has the attribute (for v = EOS: whether ``prefix`` has it). Then the conditional
    beam score log p(prefix | x) + log q is exactly log p(prefix, A | x). Computed once per source by enumerating
    every prefix of at most ``max_len`` tokens: feasible for toy vocabularies only."""

    def __init__(self, lm: LanguageModel, attribute: Attribute, max_len: int):
        self.lm, self.attribute, self.max_len = lm, attribute, integer("max_len", max_len, minimum=0)
        self._tables: dict[tuple[int, ...], dict[tuple[int, ...], Tensor]] = {}

    def log_q(self, lm: LanguageModel, state: Any, source: tuple[int, ...],
              prefixes: Sequence[tuple[int, ...]]) -> Tensor:
        if lm is not self.lm:
            raise SearchInputError("an ExactClassifier answers for the model it was built with only")
        table = self._tables.get(source)
        if table is None:
            table = self._tables[source] = self._table(source)
        missing = [p for p in prefixes if p not in table]
        if missing:
            raise SearchInputError(f"prefix {missing[0]} is longer than max_len={self.max_len} or has probability 0")
        return torch.stack([table[p] for p in prefixes]).log()

    def _table(self, source: tuple[int, ...]) -> dict[tuple[int, ...], Tensor]:
        """{prefix: (V,) q(A | prefix . v)} for every prefix of positive probability up to ``max_len`` tokens."""
        lm, eos = self.lm, self.lm.eos_id
        content = source_content(source, eos)
        state = lm.start(source)
        prefixes: list[tuple[int, ...]] = [()]
        levels: list[tuple[list[tuple[int, ...]], Tensor]] = []
        for depth in range(self.max_len + 1):
            lp = lm.logprobs(state).double()  # (n, V)
            levels.append((prefixes, lp))
            grow = torch.isfinite(lp)
            grow[:, eos] = False
            rows, tokens = grow.nonzero(as_tuple=True)
            if depth == self.max_len or not len(rows):
                break
            prefixes = [prefixes[r] + (t,) for r, t in zip(rows.tolist(), tokens.tolist(), strict=True)]
            state = lm.extend(lm.select(state, rows), tokens)
        table: dict[tuple[int, ...], Tensor] = {}
        below: dict[tuple[int, ...], float] = {}  # P(A | prefix) of the prefixes one token longer
        for prefixes, lp in reversed(levels):
            q = torch.zeros_like(lp)
            for i, p in enumerate(prefixes):
                for v in range(lm.vocab_size):
                    q[i, v] = float(self.attribute(p, content)) if v == eos else below.get(p + (v,), 0.0)
                table[p] = q[i]
            below = dict(zip(prefixes, (lp.exp() * q).sum(1).tolist(), strict=True))
        return table
