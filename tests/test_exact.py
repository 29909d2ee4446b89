"""Exact search is exact: it equals brute-force enumeration on toy and tiny HF models."""

import math

import pytest
import torch

from decoding import (
    MaxLength,
    NGramLM,
    NoRepeatNgram,
    NotCopyOfSource,
    TabularLM,
    beam_search,
    exact_search,
    greedy_search,
    length_conditional_modes,
)
from tests.conftest import brute_mode, enumerate_outputs, hf_lm


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("min_len", [0, 2])
def test_exact_equals_enumeration_on_ngram(seed, min_len):
    lm = NGramLM.random(5, order=3, seed=seed, eos_bias=-1.0)
    source = (1, 3)
    mode, lp = brute_mode(lm, source, 5, min_len)
    res = exact_search(lm, source, max_len=5, min_len=min_len, batch_size=1 + seed % 4)
    assert res.certified
    assert res.best.token_ids == mode
    assert res.best.logprob == pytest.approx(lp, abs=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_tabular_mode_is_found(seed):
    lm = TabularLM.random(4, 4, seed=seed)
    (mode, lp) = lm.mode()
    res = exact_search(lm, (), max_len=4)
    assert res.best.token_ids == mode + (lm.eos_id,)
    assert res.best.logprob == pytest.approx(lp, abs=1e-9)


@pytest.mark.parametrize("constraint", [NoRepeatNgram(2), NotCopyOfSource()])
@pytest.mark.parametrize("seed", range(4))
def test_exact_with_constraints_on_ngram(seed, constraint):
    lm = NGramLM.random(4, order=2, seed=seed)
    source = (2, 2, 3) if seed % 2 else (2,)
    mode, lp = brute_mode(lm, source, 5, constraints=[constraint])
    res = exact_search(lm, source, max_len=5, constraints=[constraint])
    assert res.certified and res.best.token_ids == mode


def test_not_copy_of_source_changes_the_mode():
    """A model that copies its source: the constrained mode is the best non-copy."""
    lm = NGramLM.random(4, order=2, seed=0)
    source = greedy_search(lm, (1,), max_len=5).best.token_ids[:-1]
    free = exact_search(lm, source, max_len=5)
    constrained = exact_search(lm, source, max_len=5, constraints=[NotCopyOfSource()])
    assert constrained.best.token_ids[:-1] != source
    assert constrained.best.token_ids == brute_mode(lm, source, 5, constraints=[NotCopyOfSource()])[0]
    assert constrained.best.logprob <= free.best.logprob


@pytest.mark.parametrize("seed", range(3))
def test_exact_equals_enumeration_on_hf_models(kind, seed):
    lm, source = hf_lm(kind, seed)
    for min_len, constraints in [(0, ()), (2, ()), (0, (NoRepeatNgram(2),)), (1, (NotCopyOfSource(),))]:
        mode, lp = brute_mode(lm, source, 4, min_len, constraints)
        res = exact_search(lm, source, max_len=4, min_len=min_len, constraints=constraints, batch_size=3)
        assert res.certified
        assert res.best.token_ids == mode, (min_len, constraints)
        assert res.best.logprob == pytest.approx(lp, abs=1e-5)


@pytest.mark.parametrize("seed", range(3))
def test_length_conditional_modes_equal_enumeration(kind, seed):
    lm, source = hf_lm(kind, seed)
    modes = length_conditional_modes(lm, source, lengths=range(5), batch_size=4)
    outputs = enumerate_outputs(lm, source, 4)
    for n, res in modes.items():
        mode, lp = max((o for o in outputs if len(o[0]) == n + 1), key=lambda e: e[1])
        assert res.certified
        assert res.best.token_ids == mode
        assert res.best.logprob == pytest.approx(lp, abs=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_length_conditional_without_seed_on_ngram(seed):
    lm = NGramLM.random(4, order=2, seed=seed, eos_bias=2.0)
    modes = length_conditional_modes(lm, (1,), lengths=[1, 3, 5], seed_beam_size=0)
    outputs = enumerate_outputs(lm, (1,), 5)
    for n in (1, 3, 5):
        assert modes[n].best.token_ids == max((o for o in outputs if len(o[0]) == n + 1), key=lambda e: e[1])[0]


def test_beam_with_every_sequence_equals_exact(kind):
    lm, source = hf_lm(kind, 0)
    for max_len in range(5):
        wide = beam_search(lm, source, beam_size=10_000, max_len=max_len)
        assert wide.best.token_ids == exact_search(lm, source, max_len=max_len).best.token_ids
        assert len(wide.hypotheses) == len(enumerate_outputs(lm, source, max_len))


def test_max_nodes_budget_returns_best_so_far_uncertified():
    lm = NGramLM.random(6, order=2, seed=3, temperature=2.0, eos_bias=-2.0)
    full = exact_search(lm, (1,), max_len=8, seed_beam_size=0)
    assert full.certified and full.stats.nodes > 10
    cut = exact_search(lm, (1,), max_len=8, max_nodes=5, seed_beam_size=0)
    assert not cut.certified
    assert cut.stats.budget_hit == "max_nodes"
    assert cut.stats.nodes <= 5
    assert cut.stats.upper_bound >= full.best.logprob
    if cut.best is not None:
        assert cut.best.logprob <= full.best.logprob


def test_the_search_tree_is_measured_and_a_memory_budget_stops_it_uncertified(kind):
    """Every batch of new rows costs its keys and values (one storage per batch); the tree's size is reported,
    and a budget below it stops the search with a valid upper bound, like max_nodes."""
    lm, source = hf_lm(kind, 1)
    root = lm.start(source)
    state = lm.extend(lm.select(root, torch.tensor([0, 0, 0])), torch.tensor([1, 2, 3]))
    kv = state.nodes[0].kv  # (L, 2, H, 1, D) of one row
    assert lm.cache_bytes(state) == 3 * kv.numel() * kv.element_size()
    prompt = root.nodes[0].kv.numel() * kv.element_size()  # the root also holds an encoder's states
    assert lm.cache_bytes(root) > prompt if kind == "marian" else lm.cache_bytes(root) == prompt
    full = exact_search(lm, source, max_len=4, batch_size=3, seed_beam_size=0)
    assert full.certified and full.stats.extra["tree_mb"] > 0
    assert full.stats.extra["bytes_per_node"] >= kv.numel() * kv.element_size()
    mode, lp = brute_mode(lm, source, 4)
    assert full.best.token_ids == mode
    cut = exact_search(lm, source, max_len=4, batch_size=3, seed_beam_size=0,
                       max_memory_mb=full.stats.extra["tree_mb"] / 4)
    assert not cut.certified and cut.stats.budget_hit == "max_memory_mb"
    assert cut.stats.nodes < full.stats.nodes and cut.stats.upper_bound >= lp - 1e-5
    roomy = exact_search(lm, source, max_len=4, batch_size=3, seed_beam_size=0, max_memory_mb=1024)
    assert roomy.certified and roomy.best.token_ids == mode
    by_length = length_conditional_modes(lm, source, lengths=[2], max_memory_mb=1e-6)
    assert not by_length[2].certified and by_length[2].stats.budget_hit == "max_memory_mb"


def test_budget_with_seed_keeps_the_beam_hypothesis():
    lm = NGramLM.random(6, order=2, seed=3, temperature=2.0, eos_bias=-2.0)
    beam = beam_search(lm, (1,), beam_size=4, max_len=8)
    cut = exact_search(lm, (1,), max_len=8, max_nodes=1)
    assert not cut.certified
    assert cut.best.logprob >= beam.best.logprob


def test_time_budget():
    lm = NGramLM.random(6, order=2, seed=3, temperature=0.1)
    res = exact_search(lm, (1,), max_len=30, max_seconds=1e-9, seed_beam_size=0)
    assert not res.certified and res.stats.budget_hit == "max_seconds"


def test_lower_bound_is_inclusive_and_certifies_absence():
    lm = NGramLM.random(5, order=2, seed=1)
    mode = exact_search(lm, (1,), max_len=4)
    again = exact_search(lm, (1,), max_len=4, lower_bound=mode.best.logprob)
    assert again.best.token_ids == mode.best.token_ids
    none = exact_search(lm, (1,), max_len=4, lower_bound=mode.best.logprob + 1e-6)
    assert none.certified and none.best is None


def test_exact_respects_max_length_constraint_and_unsatisfiable_search():
    lm = NGramLM.random(5, order=2, seed=2)
    res = exact_search(lm, (1,), max_len=6, constraints=[MaxLength(2)])
    assert res.best.length <= 2
    impossible = exact_search(lm, (1,), max_len=3, min_len=3, constraints=[MaxLength(2)])
    assert impossible.certified and impossible.best is None and impossible.stats.upper_bound == -math.inf
