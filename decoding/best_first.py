"""The batched best-first branch-and-bound engine behind ``exact_search`` and ``length_conditional_modes``.

Log-probabilities are <= 0, so a prefix's log-probability bounds that of every extension. The engine pops
prefixes in order of decreasing log-probability (uniform-cost search), so it expands exactly the prefixes
that score above the incumbents, each at most once; prefixes that cannot beat them are never expanded.

Cost on real models:
- each expanded node holds a one-row state sharing its ancestors' KV cache, so nothing is recomputed;
- one forward row scores every child of a node at once; children are kept as a sorted list and enter the
  heap lazily (one sibling at a time), so memory grows with expanded nodes, not with nodes x vocabulary;
- up to ``batch_size`` frontier nodes (of any depths) are expanded in one forward call;
- EOS children are checked when their parent is expanded and become incumbents at once.

Memory: the tree's size is counted as it grows (the adapter's ``cache_bytes`` of every new batch of rows, plus
each kept node's child list) into ``stats.extra["tree_mb"]`` and ``["bytes_per_node"]``; it is what the search
allocated, an upper bound on what it holds (rows of nodes that keep no child are freed with their batch).
``max_memory_mb`` stops the search there, like the other budgets.

Policies decide which prefixes are still useful and record finished hypotheses.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from decoding.constraints import Constraint, accepted, restricted
from decoding.protocol import Counted
from decoding.types import Hypothesis


class Policy(Protocol):
    def floor(self, depth: int) -> float:
        """A prefix of ``depth`` tokens is worth expanding iff its log-probability exceeds this."""
        ...

    def hopeless(self, logprob: float) -> bool:
        """Whether no prefix of this log-probability or lower, at any depth, is worth expanding."""
        ...

    def offer(self, hyp: Hypothesis) -> None:
        """A finished hypothesis that satisfies every constraint; the policy keeps it if it is better."""
        ...


@dataclass(eq=False)
class _Node:
    prefix: tuple[int, ...]
    token_lps: tuple[float, ...]
    logprob: float
    state: Any = None
    child_tokens: Tensor | None = None  # (k,) children worth expanding, best first
    child_lps: Tensor | None = None  # (k,) their cumulative log-probabilities


@dataclass
class Frontier:
    """What was left unexpanded when a budget stopped the search: (depth, logprob) of every pending prefix."""

    pending: list[tuple[int, float]]


def best_first(model: Counted, source: tuple[int, ...], constraints: Sequence[Constraint], policy: Policy, *,
               batch_size: int, max_nodes: int | None, max_seconds: float | None,
               max_memory_mb: float | None = None) -> Frontier | None:
    """Run to completion (returns None) or until a budget is hit (returns the unexplored frontier)."""
    eos = model.eos_id
    tie = itertools.count()
    heap: list[tuple[float, int, _Node, int]] = []  # (-child logprob, tie-break, parent, child rank)
    tree_bytes = expanded = 0

    def expand(nodes: list[_Node], state: Any) -> None:
        nonlocal tree_bytes, expanded
        tree_bytes += model.cache_bytes(state)
        expanded += len(nodes)
        lp = model.logprobs(state).double()  # (n, V)
        base = torch.tensor([n.logprob for n in nodes], dtype=torch.float64, device=lp.device)
        scores = restricted(constraints, [n.prefix for n in nodes], source, lp + base[:, None], eos)
        stripped = model.without_logprobs(state)
        for row, node in enumerate(nodes):
            end = float(scores[row, eos])
            if end > float("-inf") and accepted(constraints, node.prefix, source, eos):
                policy.offer(Hypothesis(node.prefix + (eos,), end, end, node.token_lps + (float(lp[row, eos]),),
                                        True))
            children = scores[row]
            children[eos] = float("-inf")
            keep = torch.nonzero(children > policy.floor(len(node.prefix) + 1)).view(-1)
            if keep.numel():
                values = children[keep]
                order = torch.sort(values, descending=True, stable=True).indices  # ties: lower token id first
                node.child_tokens, node.child_lps = keep[order], values[order]
                tree_bytes += node.child_tokens.nbytes + node.child_lps.nbytes
                node.state = model.select(stripped, torch.tensor([row], device=lp.device))
                heapq.heappush(heap, (-float(node.child_lps[0]), next(tie), node, 0))
        model.stats.extra["tree_mb"] = tree_bytes / 2**20
        model.stats.extra["bytes_per_node"] = tree_bytes / expanded

    root = model.start(source)
    device = model.logprobs(root).device
    expand([_Node((), (), 0.0)], root)
    while heap:
        if max_nodes is not None and model.stats.nodes >= max_nodes:
            model.stats.budget_hit = "max_nodes"
        elif max_seconds is not None and model.elapsed() >= max_seconds:
            model.stats.budget_hit = "max_seconds"
        elif max_memory_mb is not None and tree_bytes >= max_memory_mb * 2**20:
            model.stats.budget_hit = "max_memory_mb"
        if model.stats.budget_hit:
            return Frontier([(len(p.prefix) + 1, -neg) for neg, _, p, _ in heap])
        room = batch_size if max_nodes is None else min(batch_size, max_nodes - model.stats.nodes)
        batch: list[tuple[_Node, int, float]] = []
        while heap and len(batch) < room:
            neg, _, parent, rank = heapq.heappop(heap)
            value = -neg
            if not value > policy.floor(len(parent.prefix) + 1):
                if policy.hopeless(value):
                    heap.clear()
                continue
            assert parent.child_tokens is not None and parent.child_lps is not None
            if rank + 1 < len(parent.child_tokens):
                heapq.heappush(heap, (-float(parent.child_lps[rank + 1]), next(tie), parent, rank + 1))
            batch.append((parent, int(parent.child_tokens[rank]), value))
        if not batch:
            break
        tokens = torch.tensor([t for _, t, _ in batch], device=device)
        state = model.extend(model.concat([p.state for p, _, _ in batch]), tokens)
        expand([_Node(p.prefix + (t,), p.token_lps + (v - p.logprob,), v) for p, t, v in batch], state)
    return None
