"""Extra score terms for beam search (``beam_search(..., scorers=...)``).

A scorer maps the prefixes of the current beam and their (n, V) next-token log-probabilities to (n, V) terms
added to the search score of each extension. ``Hypothesis.logprob`` never includes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor


class Scorer(Protocol):
    def __call__(self, prefixes: Sequence[tuple[int, ...]], logprobs: Tensor, eos_id: int) -> Tensor: ...


@dataclass(frozen=True)
class LengthReward:
    """A constant ``reward`` (nats) per non-EOS token: the word reward of He et al. (2016) / Murray & Chiang
    (2018) that counteracts beam search's preference for short outputs."""

    reward: float

    def __call__(self, prefixes: Sequence[tuple[int, ...]], logprobs: Tensor, eos_id: int) -> Tensor:
        out = torch.full_like(logprobs, self.reward)
        out[:, eos_id] = 0.0
        return out
