"""Attributes of complete outputs, the A of conditional beam search on p(y | x, A) (DESIGN.md §4).

An attribute maps a finished output and its source, both token ids without EOS, to True / False:
``attr(tokens, source)``. Attributes compose with ``&``, ``|`` and ``~``. Each is also an end-check
``Constraint`` (``accepts`` strips the trailing EOS that Marian/T5 tokenizers append to sources), so
``exact_search(..., constraints=[attr])`` finds the exact conditional mode that conditional beam search
approximates. ``length_range`` tells a classifier which output lengths an attribute allows, so that it can be
given the remaining length as an input (length attributes are otherwise hard to predict from a prefix).

A ``Classifier`` predicts an attribute from a prefix: like an LM head, one call scores every candidate next
token of every row, q(A | x, y<=t . v), as in FUDGE (Yang & Klein 2021) and "MAP's not dead yet" (Yoshida et
al. 2024). ``decoding.toy.ExactClassifier`` computes it by enumeration; ``models.classifier`` learns it.

- ``NotDegenerate``: not empty, no repetition loop, not a copy of the source; the definition and thresholds the
  analysis uses, ``analysis.predicates.degeneracy`` (on text with ``detokenize``, else on token ids).
- ``Length(n)``, ``LengthRange(lo, hi)``, ``LengthRatio(lo, hi)``: output length in tokens, exactly, within a
  range, or relative to the source's.
- ``RewardAbove(reward, tau)``: any scoring function of (tokens, source) reaches ``tau``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from torch import Tensor

from analysis.predicates import DegeneracyThresholds, degeneracy, longest_repeat, seq_rep_n
from decoding.constraints import Constraint
from decoding.protocol import LanguageModel
from decoding.types import SearchInputError

__all__ = [
    "And", "Attribute", "Classifier", "Length", "LengthRange", "LengthRatio", "Not", "NotDegenerate", "Or",
    "RewardAbove", "source_content",
]

Tokens = tuple[int, ...]


def source_content(source: Sequence[int], eos_id: int) -> Tokens:
    """The source ids an attribute sees: a trailing EOS (appended by Marian/T5 tokenizers) removed."""
    src = tuple(source)
    return src[:-1] if src and src[-1] == eos_id else src


class Attribute(Constraint):
    """A yes/no property of a complete output. Subclasses define ``__call__`` and ``name``."""

    def __call__(self, tokens: Tokens, source: Tokens) -> bool:
        raise NotImplementedError

    @property
    def name(self) -> str:
        """Identifies the attribute, e.g. for the folder a trained classifier is saved in."""
        raise NotImplementedError

    def length_range(self, source: Tokens) -> tuple[int, int] | None:
        """(lo, hi): every output with the attribute has lo <= length <= hi tokens; None if length is free."""
        return None

    def accepts(self, tokens: Tokens, source: Tokens, eos_id: int) -> bool:
        return self(tokens, source_content(source, eos_id))

    def __and__(self, other: Attribute) -> And:
        return And(self, other)

    def __or__(self, other: Attribute) -> Or:
        return Or(self, other)

    def __invert__(self) -> Not:
        return Not(self)


@dataclass(frozen=True)
class And(Attribute):
    left: Attribute
    right: Attribute

    def __call__(self, tokens: Tokens, source: Tokens) -> bool:
        return self.left(tokens, source) and self.right(tokens, source)

    @property
    def name(self) -> str:
        return f"and({self.left.name},{self.right.name})"

    def length_range(self, source: Tokens) -> tuple[int, int] | None:
        ranges = [r for r in (self.left.length_range(source), self.right.length_range(source)) if r is not None]
        if not ranges:
            return None
        return max(lo for lo, _ in ranges), min(hi for _, hi in ranges)


@dataclass(frozen=True)
class Or(Attribute):
    left: Attribute
    right: Attribute

    def __call__(self, tokens: Tokens, source: Tokens) -> bool:
        return self.left(tokens, source) or self.right(tokens, source)

    @property
    def name(self) -> str:
        return f"or({self.left.name},{self.right.name})"

    def length_range(self, source: Tokens) -> tuple[int, int] | None:
        left, right = self.left.length_range(source), self.right.length_range(source)
        if left is None or right is None:
            return None
        return min(left[0], right[0]), max(left[1], right[1])


@dataclass(frozen=True)
class Not(Attribute):
    inner: Attribute

    def __call__(self, tokens: Tokens, source: Tokens) -> bool:
        return not self.inner(tokens, source)

    @property
    def name(self) -> str:
        return f"not({self.inner.name})"


@dataclass(frozen=True)
class NotDegenerate(Attribute):
    """Not ``degenerate`` as ``analysis.predicates`` defines it. With ``detokenize`` (ids -> text) the check runs
    on the words of the texts, exactly as in the analysis; without, it runs on token ids, where a copy is an
    exact copy of the source ids (near copies need text). ``source_text`` turns the source ids into the text an
    output must not copy when that is not all of them (default ``detokenize``): for a chat prompt, the user's
    message without the template around it (``models.registry.user_message``)."""

    thresholds: DegeneracyThresholds = DegeneracyThresholds()
    detokenize: Callable[[Sequence[int]], str] | None = field(default=None, compare=False)
    source_text: Callable[[Sequence[int]], str] | None = field(default=None, compare=False)

    def __call__(self, tokens: Tokens, source: Tokens) -> bool:
        if self.detokenize is not None:
            source_text = (self.source_text or self.detokenize)(source)
            return not degeneracy(self.detokenize(tokens), source_text, thresholds=self.thresholds)["degenerate"]
        t = self.thresholds
        return bool(tokens) and tokens != source and seq_rep_n(tokens, 4) <= t.seq_rep_4 \
            and longest_repeat(tokens) < t.longest_repeat

    @property
    def name(self) -> str:
        t = self.thresholds
        params = "" if t == DegeneracyThresholds() else f"({t.seq_rep_4},{t.longest_repeat},{t.copy_near})"
        return f"not_degenerate{params}{'_text' if self.detokenize is not None else ''}"


@dataclass(frozen=True)
class Length(Attribute):
    """Exactly ``n`` tokens (EOS excluded)."""

    n: int

    def __post_init__(self) -> None:
        if self.n < 0:
            raise SearchInputError(f"Length needs n >= 0, got {self.n}")

    def __call__(self, tokens: Tokens, source: Tokens) -> bool:
        return len(tokens) == self.n

    @property
    def name(self) -> str:
        return f"length({self.n})"

    def length_range(self, source: Tokens) -> tuple[int, int] | None:
        return self.n, self.n


@dataclass(frozen=True)
class LengthRange(Attribute):
    """``lo <= len(tokens) <= hi`` tokens (EOS excluded)."""

    lo: int
    hi: int

    def __post_init__(self) -> None:
        if not 0 <= self.lo <= self.hi:
            raise SearchInputError(f"LengthRange needs 0 <= lo <= hi, got lo={self.lo}, hi={self.hi}")

    def __call__(self, tokens: Tokens, source: Tokens) -> bool:
        return self.lo <= len(tokens) <= self.hi

    @property
    def name(self) -> str:
        return f"length_range({self.lo},{self.hi})"

    def length_range(self, source: Tokens) -> tuple[int, int] | None:
        return self.lo, self.hi


@dataclass(frozen=True)
class LengthRatio(Attribute):
    """``lo <= len(tokens) / len(source) <= hi`` in tokens (source without its trailing EOS); never true for an
    empty source."""

    lo: float
    hi: float

    def __post_init__(self) -> None:
        if not 0 <= self.lo <= self.hi:
            raise SearchInputError(f"LengthRatio needs 0 <= lo <= hi, got lo={self.lo}, hi={self.hi}")

    def __call__(self, tokens: Tokens, source: Tokens) -> bool:
        return bool(source) and self.lo * len(source) <= len(tokens) <= self.hi * len(source)

    @property
    def name(self) -> str:
        return f"length_ratio({self.lo},{self.hi})"

    def length_range(self, source: Tokens) -> tuple[int, int] | None:
        # ceil / floor of the very products __call__ compares with, so the range and the check agree exactly
        return (math.ceil(self.lo * len(source)), math.floor(self.hi * len(source))) if source else (1, 0)


@dataclass(frozen=True)
class RewardAbove(Attribute):
    """``reward(tokens, source) >= tau`` for any scoring function (wrap a text metric with a detokenizer);
    ``label`` names the function in ``name``."""

    reward: Callable[[Tokens, Tokens], float] = field(compare=False)
    tau: float
    label: str

    def __call__(self, tokens: Tokens, source: Tokens) -> bool:
        return self.reward(tokens, source) >= self.tau

    @property
    def name(self) -> str:
        return f"reward_above({self.label},{self.tau})"


class Classifier(Protocol):
    attribute: Attribute

    def log_q(self, lm: LanguageModel, state: Any, source: Tokens, prefixes: Sequence[Tokens]) -> Tensor:
        """(n, V): log q(A | x, prefix . v) for every row of ``state`` (its generated tokens are ``prefixes[row]``,
        ``source`` is the source as given to ``lm``) and every next token v; the EOS column is for the finished
        output ``prefix`` itself."""
        ...
