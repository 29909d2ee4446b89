"""The narrow model protocol every search runs against (DESIGN.md §3).

A ``State`` is an opaque batch of rows, one per prefix. Adapters decide what a row holds (a KV-cache path, a
token tuple); searches only ever call the methods below, so the same search runs on toy distributions, any
Hugging Face model, and wrappers such as HSO.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

import torch
from torch import Tensor

from decoding.types import NonFiniteLogProbError, SearchStats
from decoding.validate import token_ids

State = TypeVar("State")


class LanguageModel(Protocol[State]):
    eos_id: int
    vocab_size: int
    masked_ids: tuple[int, ...]
    """Token ids the adapter never lets the model emit (pad, unk, ...); their probability is renormalised away."""

    def start(self, source_ids: Sequence[int]) -> State:
        """Encode the source / run the prompt once; one row holding the empty target prefix."""
        ...

    def logprobs(self, state: State) -> Tensor:
        """(n, V) natural-log next-token distribution of every row, normalised over non-masked tokens."""
        ...

    def extend(self, state: State, tokens: Tensor) -> State:
        """Append one token (n,) to every row."""
        ...

    def select(self, state: State, rows: Tensor) -> State:
        """Reorder / repeat / drop rows."""
        ...

    def concat(self, states: Sequence[State]) -> State:
        """Stack the rows of several states of the same source into one batch."""
        ...

    def without_logprobs(self, state: State) -> State:
        """The same rows without their next-token distributions, for states kept only to be extended later
        (a search tree keeps thousands; a (1, V) row each would dominate memory)."""
        ...

    def score(self, source_ids: Sequence[int], target_ids: Sequence[int]) -> Tensor:
        """(len(target_ids),) teacher-forced log-probabilities of the target tokens, same masking as search."""
        ...

    def signature(self) -> dict[str, Any]:
        """What identifies this model's distribution: name, masked ids, dtype."""
        ...


@runtime_checkable
class HiddenStates(Protocol):
    """An adapter that also exposes the final-layer hidden state the next-token distribution is computed from
    (what attribute classifiers read; DESIGN.md §4)."""

    def hidden(self, state: Any) -> Tensor:
        """(n, d) final-layer hidden state at the last position of every row."""
        ...


@runtime_checkable
class CacheBytes(Protocol):
    """An adapter that says what its states hold in memory (exact search's ``max_memory_mb`` budget)."""

    def cache_bytes(self, state: Any) -> int:
        """Bytes of the tensors ``state`` (a result of ``start`` or ``extend``) added: its rows' newest cache entries
        and, for the root, the source's encodings; each storage counted once (``storage_bytes``)."""
        ...


def storage_bytes(tensors: Sequence[Tensor | None]) -> int:
    """Bytes of the storages behind ``tensors``, each counted once (views of one batch share theirs)."""
    seen: dict[int, int] = {}
    for t in tensors:
        if t is not None:
            storage = t.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def as_ids(ids: Sequence[int] | Tensor, what: str = "source_ids") -> tuple[int, ...]:
    """``ids`` (a sequence or 1-D tensor of non-negative integers) as a tuple of ints."""
    return token_ids(what, ids)


def check_finite(logprobs: Tensor) -> Tensor:
    """Raise if a distribution contains NaN / +inf or puts no mass anywhere; return it unchanged."""
    if torch.isnan(logprobs).any() or torch.isposinf(logprobs).any():
        raise NonFiniteLogProbError(
            "the model returned NaN or +inf log-probabilities; check the weights (e.g. an fp16 overflow) and "
            "the input ids")
    if (logprobs.amax(dim=-1) == float("-inf")).any():
        raise NonFiniteLogProbError("the model put zero probability on every allowed token")
    return logprobs


class Counted:
    """Wraps a LanguageModel and counts what a search costs into a ``SearchStats``."""

    def __init__(self, lm: LanguageModel[Any], stats: SearchStats):
        self.lm = lm
        self.stats = stats
        self.eos_id = lm.eos_id
        self.vocab_size = lm.vocab_size
        self._t0 = time.perf_counter()

    def _count(self, rows: int) -> None:
        self.stats.nodes += rows
        self.stats.forward_calls += 1
        self.stats.tokens_scored += rows * self.vocab_size

    def start(self, source_ids: Sequence[int]) -> Any:
        state = self.lm.start(source_ids)
        self._count(1)
        return state

    def extend(self, state: Any, tokens: Tensor) -> Any:
        new = self.lm.extend(state, tokens)
        self._count(len(tokens))
        return new

    def logprobs(self, state: Any) -> Tensor:
        return check_finite(self.lm.logprobs(state))

    def select(self, state: Any, rows: Tensor) -> Any:
        return self.lm.select(state, rows)

    def concat(self, states: Sequence[Any]) -> Any:
        return self.lm.concat(states)

    def without_logprobs(self, state: Any) -> Any:
        return self.lm.without_logprobs(state)

    def cache_bytes(self, state: Any) -> int:
        """The adapter's ``CacheBytes.cache_bytes``; 0 for an adapter that does not say (toy models)."""
        return self.lm.cache_bytes(state) if isinstance(self.lm, CacheBytes) else 0

    def elapsed(self) -> float:
        return time.perf_counter() - self._t0

    def finish(self) -> SearchStats:
        self.stats.wall_s = self.elapsed()
        return self.stats
