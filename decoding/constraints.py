"""Constraints on the outputs a search may return (DESIGN.md §4).

A constraint is *prefix-closed* when every prefix of an allowed output is allowed, so violations can be pruned
while searching (``restrict`` removes next tokens). Other constraints are *end checks* (``accepts``), applied
only to finished outputs; pruning never relies on them, so branch-and-bound bounds stay admissible.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from torch import Tensor

from decoding.validate import integer, token_ids

NEG_INF = float("-inf")


class Constraint:
    def restrict(self, prefix: tuple[int, ...], source: tuple[int, ...], scores: Tensor, eos_id: int) -> None:
        """Set to -inf, in place, the (V,) ``scores`` of tokens that may not follow ``prefix``."""

    def accepts(self, tokens: tuple[int, ...], source: tuple[int, ...], eos_id: int) -> bool:
        """Whether a finished output (``tokens`` without EOS) is allowed."""
        return True


@dataclass(frozen=True)
class MinLength(Constraint):
    n: int

    def __post_init__(self) -> None:
        integer("MinLength n", self.n, minimum=0)

    def restrict(self, prefix: tuple[int, ...], source: tuple[int, ...], scores: Tensor, eos_id: int) -> None:
        if len(prefix) < self.n:
            scores[eos_id] = NEG_INF

    def accepts(self, tokens: tuple[int, ...], source: tuple[int, ...], eos_id: int) -> bool:
        return len(tokens) >= self.n


@dataclass(frozen=True)
class MaxLength(Constraint):
    """At most ``n`` tokens before EOS: once a prefix has ``n`` tokens only EOS may follow (as in fairseq)."""

    n: int

    def __post_init__(self) -> None:
        integer("MaxLength n", self.n, minimum=0)

    def restrict(self, prefix: tuple[int, ...], source: tuple[int, ...], scores: Tensor, eos_id: int) -> None:
        if len(prefix) >= self.n:
            eos = scores[eos_id].clone()
            scores.fill_(NEG_INF)
            scores[eos_id] = eos

    def accepts(self, tokens: tuple[int, ...], source: tuple[int, ...], eos_id: int) -> bool:
        return len(tokens) <= self.n


@dataclass(frozen=True)
class NoRepeatNgram(Constraint):
    """No n-gram of output tokens occurs twice (EOS excluded), as ``no_repeat_ngram_size`` in fairseq/HF."""

    n: int

    def __post_init__(self) -> None:
        integer("NoRepeatNgram n", self.n, minimum=1)

    def restrict(self, prefix: tuple[int, ...], source: tuple[int, ...], scores: Tensor, eos_id: int) -> None:
        k = self.n - 1
        if len(prefix) < k:
            return
        tail = prefix[len(prefix) - k:]
        banned = [prefix[i + k] for i in range(len(prefix) - k) if prefix[i:i + k] == tail]
        banned = [t for t in banned if t != eos_id]
        if banned:
            scores[banned] = NEG_INF

    def accepts(self, tokens: tuple[int, ...], source: tuple[int, ...], eos_id: int) -> bool:
        grams = [tokens[i:i + self.n] for i in range(len(tokens) - self.n + 1)]
        return len(grams) == len(set(grams))


@dataclass(frozen=True)
class BannedTokens(Constraint):
    """Tokens no output may contain; banning EOS leaves no finished output."""

    ids: tuple[int, ...]

    def __init__(self, ids: Collection[int]):
        object.__setattr__(self, "ids", token_ids("BannedTokens ids", ids))

    def restrict(self, prefix: tuple[int, ...], source: tuple[int, ...], scores: Tensor, eos_id: int) -> None:
        if self.ids:
            if max(self.ids) >= len(scores):
                token_ids("BannedTokens ids", self.ids, len(scores))
            scores[list(self.ids)] = NEG_INF

    def accepts(self, tokens: tuple[int, ...], source: tuple[int, ...], eos_id: int) -> bool:
        return eos_id not in self.ids and not set(tokens) & set(self.ids)


@dataclass(frozen=True)
class NotCopyOfSource(Constraint):
    """End check: the output is not the source. Compares token ids, ignoring a trailing EOS on the source (as
    Marian/T5 tokenizers append), or the texts when ``decode`` maps ids to text (distinct vocabularies)."""

    decode: Callable[[Sequence[int]], str] | None = field(default=None, compare=False)

    def accepts(self, tokens: tuple[int, ...], source: tuple[int, ...], eos_id: int) -> bool:
        src = source[:-1] if source and source[-1] == eos_id else source
        if self.decode is not None:
            return self.decode(tokens).strip() != self.decode(src).strip()
        return tokens != src


def length_constraints(min_len: int, max_len: int, constraints: Sequence[Constraint]) -> list[Constraint]:
    return [MinLength(min_len), MaxLength(max_len), *constraints]


def restricted(constraints: Sequence[Constraint], prefixes: Sequence[tuple[int, ...]], source: tuple[int, ...],
               scores: Tensor, eos_id: int) -> Tensor:
    """(n, V) copy of ``scores`` with every row restricted by every constraint."""
    out = scores.clone()
    for row, prefix in enumerate(prefixes):
        for c in constraints:
            c.restrict(prefix, source, out[row], eos_id)
    return out


def accepted(constraints: Sequence[Constraint], tokens: tuple[int, ...], source: tuple[int, ...],
             eos_id: int) -> bool:
    return all(c.accepts(tokens, source, eos_id) for c in constraints)

