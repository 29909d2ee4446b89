"""Exact searches reject sizes that describe no search instead of certifying a space they never searched."""

import pytest

from decoding import NGramLM, SearchInputError, exact_search, length_conditional_modes

SEARCHES = {
    "exact": lambda lm, **kw: exact_search(lm, (1,), max_len=3, **kw),
    "length_conditional": lambda lm, **kw: length_conditional_modes(lm, (1,), lengths=[1, 2], **kw),
}


@pytest.mark.parametrize("search", SEARCHES.values(), ids=SEARCHES.keys())
@pytest.mark.parametrize("sizes", [{"batch_size": 0}, {"batch_size": -2}, {"seed_beam_size": -1}], ids=str)
def test_bad_sizes_are_rejected_with_a_reason(search, sizes):
    with pytest.raises(SearchInputError, match=next(iter(sizes))):
        search(NGramLM.random(4, seed=0), **sizes)
