"""Every search rejects every argument that describes no search, with a SearchInputError naming the argument,
instead of failing inside torch, switching a budget off or certifying a space it never searched."""

import inspect
import math

import numpy as np
import pytest
import torch

from decoding import (
    BannedTokens,
    ExactClassifier,
    Length,
    MinLength,
    NGramLM,
    SearchInputError,
    TabularLM,
    beam_search,
    conditional_beam_search,
    exact_search,
    greedy_search,
    length_conditional_modes,
    sample,
)

LM = NGramLM.random(4, seed=0)
CLASSIFIER = ExactClassifier(LM, Length(2), 3)

SEARCHES = {
    "greedy": (greedy_search, {"max_len": 3}),
    "beam": (beam_search, {"beam_size": 2, "max_len": 3}),
    "exact": (exact_search, {"max_len": 3}),
    "length_conditional": (length_conditional_modes, {"lengths": [1, 2]}),
    "conditional_beam": (conditional_beam_search, {"attribute": Length(2), "classifier": CLASSIFIER,
                                                   "beam_size": 2, "max_len": 3}),
    "sample": (sample, {"n": 2, "max_len": 3}),
}

NAN, INF = math.nan, math.inf


def _label(value):
    return repr(value) if value is None or isinstance(value, int | float | str | list | tuple) else type(value).__name__


COUNT = [2.5, 2.0, True, "2", None, NAN]
BAD = {
    "source_ids": [(4,), (1, 99), (-1,), (1.5,), (True,), "12", 1, torch.tensor([1.0]), torch.tensor([[1]])],
    "max_len": [-1, *COUNT],
    "min_len": [-1, *COUNT],
    "beam_size": [0, -1, *COUNT],
    "n": [0, -3, *COUNT],
    "batch_size": [0, -2, *COUNT],
    "seed_beam_size": [-1, *COUNT],
    "max_nodes": [0, -1, 2.5, True, "5", INF, NAN],
    "candidates": [0, -1, 1.5, True, "3"],
    "top_k": [0, -1, 2.5, True, NAN],
    "max_seconds": [NAN, INF, -INF, 0, -1.0, "1", True],
    "max_memory_mb": [NAN, INF, 0, -1.0, "1", True],
    "lower_bound": [NAN, INF, -INF, 0.5, "-1", True],
    "temperature": [NAN, INF, 0, 0.0, -1.0, None, "1", True],
    "top_p": [NAN, INF, 0, -0.1, 1.5, "0.5", True],
    "seed": [-1, 2 ** 64, 1.5, True, "0", None],
    "lengths": [[], [-1], [1.5], [True], [1, NAN], "12", 3, (n for n in [1, 2]), None],
    "constraints": ["no", MinLength(1), [object()], [MinLength], None],
    "scorers": ["s", [1], None],
    "attribute": ["length", None, Length],
    "classifier": [object(), None, Length(2)],
}

CASES = [pytest.param(search, kwargs, name, value, id=f"{label}-{name}={_label(value)}")
         for label, (search, kwargs) in SEARCHES.items()
         for name in [*inspect.signature(search).parameters][1:]
         for value in BAD[name]]


@pytest.mark.parametrize(("search", "kwargs", "name", "value"), CASES)
def test_bad_argument_is_rejected_naming_it(search, kwargs, name, value):
    args = {"source_ids": (1,), **kwargs, name: value}
    with pytest.raises(SearchInputError, match=name) as err:
        search(LM, args.pop("source_ids"), **args)
    if value is None or isinstance(value, int | float | str):
        assert repr(value) in str(err.value)


def test_every_search_argument_has_bad_values():
    for search, _ in SEARCHES.values():
        assert set(inspect.signature(search).parameters) - {"lm"} <= BAD.keys(), search.__name__


@pytest.mark.parametrize("label", [label for label, (search, _) in SEARCHES.items()
                                   if "min_len" in inspect.signature(search).parameters])
def test_min_len_above_max_len_is_rejected(label):
    search, kwargs = SEARCHES[label]
    with pytest.raises(SearchInputError, match="max_len"):
        search(LM, (1,), **{**kwargs, "max_len": 2, "min_len": 3})


def test_boundary_values_and_numpy_or_tensor_integers_are_accepted():
    i = np.int64
    assert greedy_search(LM, np.array([1, 3]), max_len=i(0)).best.token_ids == (0,)
    assert beam_search(LM, torch.tensor([1]), beam_size=i(1), max_len=2, min_len=2).best.length == 2
    assert len(sample(LM, (0, 3), n=i(2), max_len=0, temperature=1e-3, top_k=1, top_p=1.0, seed=2 ** 64 - 1)
               .hypotheses) == 2
    mode = exact_search(LM, (1,), max_len=3, seed_beam_size=0, batch_size=1, max_nodes=10 ** 6, max_seconds=1e3)
    assert mode.certified
    assert exact_search(LM, (1,), max_len=3, lower_bound=0).best is None
    assert exact_search(LM, (1,), max_len=3, lower_bound=mode.best.logprob).best.token_ids == mode.best.token_ids
    modes = length_conditional_modes(LM, (1,), lengths={i(0), 2}, seed_beam_size=i(0))
    assert set(modes) == {0, 2} and all(type(n) is int for n in modes)


@pytest.mark.parametrize("build", [
    lambda: NGramLM(torch.zeros(4, 4), eos_id=4),
    lambda: NGramLM(torch.zeros(4, 4), eos_id=-1),
    lambda: NGramLM(torch.zeros(4, 4), eos_id=True),
    lambda: NGramLM(torch.zeros(4, 4), eos_id=0, masked_ids=[4]),
    lambda: NGramLM(torch.zeros(4, 4), eos_id=0, masked_ids=[-1]),
    lambda: TabularLM({(1,): 1.0}, 4, eos_id=99),
    lambda: TabularLM({(1,): 1.0}, 4, eos_id=-1),
    lambda: TabularLM({(1, 7): 1.0}, 4, eos_id=0),
    lambda: TabularLM({(1,): 1.0}, 0, eos_id=0),
], ids=["ngram-eos-4", "ngram-eos--1", "ngram-eos-bool", "ngram-masked-4", "ngram-masked--1", "tabular-eos-99",
        "tabular-eos--1", "tabular-token-7", "tabular-vocab-0"])
def test_toy_models_reject_ids_outside_their_vocabulary(build):
    with pytest.raises(SearchInputError, match="eos_id|masked_ids|table|vocab_size"):
        build()


@pytest.mark.parametrize("ids", [[4], [-1], [1.0], [True]], ids=str)
def test_banned_tokens_outside_the_vocabulary_are_rejected(ids):
    with pytest.raises(SearchInputError, match="BannedTokens"):
        exact_search(LM, (1,), max_len=3, constraints=[BannedTokens(ids)])
