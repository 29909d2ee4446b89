"""Degeneracy and likelihood metrics: golden values worked by hand, and the frame functions against per-row ones."""

import math
import random

import numpy as np
import pandas as pd
import pytest

from analysis.degeneracy import (
    COLUMNS,
    DegeneracyThresholds,
    add_degeneracy,
    copy_exact,
    copy_near,
    degeneracy,
    distinct_n,
    longest_repeat,
    rep_w,
    seq_rep_n,
)
from analysis.likelihood import SEARCH_ERROR_TOL, add_likelihood

NAN = math.nan
LOOP = "the sons of the sons of the sons of the sons"
GENESIS = "And God said, Let there be light: and there was light."
GENESIS_DE = "Und Gott sprach: Es werde Licht! und es ward Licht."


def same(a, b):
    """Equal, with NaN equal to NaN and None equal to pd.NA (both mean 'no value')."""
    if pd.isna(a) or pd.isna(b):
        return bool(pd.isna(a) and pd.isna(b))
    return a == pytest.approx(b)


# tokens, n, seq_rep_n, rep_w (window 16), distinct_n, longest_repeat
@pytest.mark.parametrize("tokens, n, rep_n, rep, distinct, longest", [
    ([], 1, 0.0, 0.0, NAN, 0),
    (["a"], 1, 0.0, 0.0, 1.0, 0),
    (["a"], 2, 0.0, 0.0, NAN, 0),
    (["a", "a", "a"], 1, 2 / 3, 2 / 3, 1 / 3, 2),
    (["a", "a", "a"], 2, 1 / 2, 2 / 3, 1 / 2, 2),
    (["a", "b", "a", "b"], 2, 1 / 3, 1 / 2, 2 / 3, 2),
    (["a", "b", "c", "d"], 1, 0.0, 0.0, 1.0, 0),
    ([1, 2, 1, 2, 1], 3, 1 / 3, 3 / 5, 2 / 3, 3),
    (LOOP.split(), 4, 5 / 8, 8 / 11, 3 / 8, 8),
    (GENESIS.split(), 4, 0.0, 1 / 11, 1.0, 1),
])
def test_repetition_golden(tokens, n, rep_n, rep, distinct, longest):
    assert seq_rep_n(tokens, n) == pytest.approx(rep_n)
    assert rep_w(tokens) == pytest.approx(rep)
    assert same(distinct_n(tokens, n), distinct)
    assert longest_repeat(tokens) == longest


def test_rep_w_counts_only_the_window():
    tokens = ["a", "b", "c", "a"]
    assert rep_w(tokens, window=2) == 0.0
    assert rep_w(tokens, window=3) == pytest.approx(1 / 4)


@pytest.mark.parametrize("text, source, exact, near", [
    ("In  the beginning ", "In the beginning", True, True),
    ("in the beginning", "In the beginning", False, True),
    ("In the beginning God", "In the beginning", False, True),
    ("", "", False, False),
    ("   ", "", False, False),
    ("And the earth was", "In the beginning", False, False),
])
def test_copy(text, source, exact, near):
    assert copy_exact(text, source) is exact
    assert copy_near(text, source) is near


def test_copy_near_threshold_is_inclusive():
    # SequenceMatcher ratio of "abcd" and "abce" = 2 * 3 matched / 8 characters = 0.75
    assert copy_near("abcd", "abce", threshold=0.75)
    assert not copy_near("abcd", "abce", threshold=0.76)


def test_degeneracy_of_no_output_is_missing():
    row = degeneracy(None, "source", "reference")
    assert set(row) == set(COLUMNS)
    assert all(pd.isna(v) for v in row.values())


@pytest.mark.parametrize("text, source, reference, expected", [
    ("", GENESIS_DE, GENESIS, dict(
        empty=True, length_ratio_src=0.0, length_ratio_ref=0.0, seq_rep_4=0.0, rep_w=0.0, rep_consecutive=0.0,
        distinct_1=NAN,
        distinct_2=NAN, longest_repeat=0, copy_exact=False, copy_near=False, degenerate=True)),
    ("Licht", GENESIS_DE, None, dict(
        empty=False, length_ratio_src=0.1, length_ratio_ref=NAN, seq_rep_4=0.0, rep_w=0.0, rep_consecutive=0.0,
        distinct_1=1.0,
        distinct_2=NAN, longest_repeat=0, copy_exact=False, copy_near=False, degenerate=False)),
    (GENESIS, GENESIS_DE, GENESIS, dict(
        empty=False, length_ratio_src=1.1, length_ratio_ref=1.0, seq_rep_4=0.0, rep_w=1 / 11, rep_consecutive=0.0,
        distinct_1=10 / 11,
        distinct_2=1.0, longest_repeat=1, copy_exact=False, copy_near=False, degenerate=False)),
    (GENESIS_DE, GENESIS_DE, GENESIS, dict(
        empty=False, length_ratio_src=1.0, length_ratio_ref=10 / 11, seq_rep_4=0.0, rep_w=0.0, rep_consecutive=0.0,
        distinct_1=1.0,
        distinct_2=1.0, longest_repeat=0, copy_exact=True, copy_near=True, degenerate=True)),
    ("Und Gott sprach: Es werde Licht! und es war Licht.", GENESIS_DE, "", dict(
        empty=False, length_ratio_src=1.0, length_ratio_ref=NAN, seq_rep_4=0.0, rep_w=0.0, rep_consecutive=0.0,
        distinct_1=1.0,
        distinct_2=1.0, longest_repeat=0, copy_exact=False, copy_near=True, degenerate=True)),
    (LOOP, GENESIS_DE, GENESIS, dict(
        empty=False, length_ratio_src=1.1, length_ratio_ref=1.0, seq_rep_4=5 / 8, rep_w=8 / 11, rep_consecutive=0.0,
        distinct_1=3 / 11,
        distinct_2=3 / 10, longest_repeat=8, copy_exact=False, copy_near=False, degenerate=True)),
])
def test_degeneracy_golden(text, source, reference, expected):
    row = degeneracy(text, source, reference)
    assert row.keys() == expected.keys()
    for name, value in expected.items():
        assert same(row[name], value), name


@pytest.mark.parametrize("repeat, flagged", [(7, False), (8, True)])
def test_one_long_repeated_phrase_is_degenerate(repeat, flagged):
    phrase = [f"w{i}" for i in range(repeat)]
    words = phrase + ["x", "y", "z"] + phrase
    row = degeneracy(" ".join(words), "source")
    assert row["longest_repeat"] == repeat
    assert row["seq_rep_4"] <= 0.5
    assert row["degenerate"] is flagged


def test_thresholds_change_the_flag_and_reject_bad_values():
    assert not degeneracy(LOOP, "x", thresholds=DegeneracyThresholds(seq_rep_4=0.7, longest_repeat=9))["degenerate"]
    assert degeneracy("Licht", "Licht!", thresholds=DegeneracyThresholds(copy_near=0.95))["degenerate"] is False
    assert degeneracy("Licht", "Licht!", thresholds=DegeneracyThresholds(copy_near=0.8))["degenerate"] is True
    for bad in (dict(seq_rep_4=1.0), dict(seq_rep_4=-0.1), dict(longest_repeat=0), dict(copy_near=0.0)):
        with pytest.raises(ValueError, match="must be"):
            DegeneracyThresholds(**bad)


def _brute_longest_repeat(tokens):
    for n in range(len(tokens) - 1, 0, -1):
        grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
        if len(set(grams)) < len(grams):
            return n
    return 0


def _random_text(rng):
    if rng.random() < 0.1:
        return None
    words = [rng.choice("abcd") for _ in range(rng.randrange(0, 30))]
    return rng.choice([" ", "  ", "\t"]).join(words)


@pytest.mark.parametrize("seed", range(3))
def test_add_degeneracy_equals_the_per_row_functions(seed):
    rng = random.Random(seed)
    texts = [_random_text(rng) for _ in range(60)]
    sources = [t if t is not None and rng.random() < 0.3 else _random_text(rng) or "" for t in texts]
    references = [_random_text(rng) for _ in texts]
    df = pd.DataFrame({"text": texts, "source": sources, "reference": references, "n": range(60)},
                      index=rng.sample(range(1000), 60)).astype({"text": "string", "reference": "string"})
    out = add_degeneracy(df)
    assert list(out.columns) == ["text", "source", "reference", "n", *COLUMNS]
    assert out.index.equals(df.index) and out["n"].tolist() == list(range(60))
    assert dict(out.dtypes[list(COLUMNS)].astype(str)) == COLUMNS
    assert add_degeneracy(out).equals(out)
    for text, source, reference, (_, row) in zip(texts, sources, references, out.iterrows(), strict=True):
        if text is None:
            assert row[list(COLUMNS)].isna().all()
            continue
        words = text.split()
        assert row["empty"] == (not words)
        assert same(row["length_ratio_src"], len(words) / len(source.split()) if source.split() else NAN)
        assert same(row["length_ratio_ref"], len(words) / len(reference.split()) if reference and
                    reference.split() else NAN)
        assert row["seq_rep_4"] == seq_rep_n(words, 4)
        assert row["rep_w"] == rep_w(words)
        assert same(row["distinct_1"], distinct_n(words, 1)) and same(row["distinct_2"], distinct_n(words, 2))
        assert row["longest_repeat"] == longest_repeat(words) == _brute_longest_repeat(words)
        assert row["copy_exact"] == copy_exact(text, source) and row["copy_near"] == copy_near(text, source)
        assert row["degenerate"] == (not words or copy_near(text, source) or seq_rep_n(words, 4) > 0.5
                                     or longest_repeat(words) >= 8)


# ---- likelihood -------------------------------------------------------------------------------------------------

def _row(method, rank, token_ids, logprob, *, certified=None, finished=True, example_id="e1", run_id="r1",
         model="m"):
    n_tokens = None if logprob is None else len(token_ids) - finished
    family = "beam" if method == "beam5" else method
    return dict(run_id=run_id, model=model, dataset="d", example_id=example_id, method=method, family=family, rank=rank,
                certified=certified, token_ids=token_ids, n_tokens=n_tokens, finished=finished, logprob=logprob)


def test_likelihood_golden():
    eos = 0
    rows = [
        _row("exact", 0, [5, eos], -1.0, certified=True),
        _row("beam5", 0, [5, eos], -1.00002),            # the mode again, float noise below the tolerance
        _row("beam5", 1, [6, 7, eos], -2.0),
        _row("greedy", 0, [6, 7, eos], -2.0),
        _row("sample", 0, [8, 8, 8], -2.0, finished=False),  # tied with [6, 7]; unfinished: no EOS term
        _row("exact_nonempty", 0, [eos], -3.0, certified=True),
        _row("greedy", 0, [], None, example_id="e2"),   # no output
    ]
    out = add_likelihood(pd.DataFrame(rows))
    assert out["logprob_per_token"].tolist()[:6] == pytest.approx([-0.5, -0.50001, -2 / 3, -2 / 3, -2 / 3, -3.0])
    assert out["logprob_rank"].tolist() == [1, 1, 2, 2, 2, 4, pd.NA]
    assert out["mode_logprob"].tolist()[:6] == [-1.0] * 6 and math.isnan(out["mode_logprob"].iloc[6])
    assert out["search_error"].fillna(-1).tolist() == [0.0, 0.0, -1, 1.0, -1, 1.0, -1]
    assert dict(out.dtypes[["logprob_per_token", "logprob_rank", "mode_logprob", "search_error"]].astype(str)) == {
        "logprob_per_token": "float64", "logprob_rank": "Int64", "mode_logprob": "float64", "search_error": "float64"}


@pytest.mark.parametrize("mode_row", [
    _row("exact", 0, [5, 0], -1.0, certified=False),
    _row("exact", 0, [5, 0], -1.0, certified=None),
    _row("exact", 1, [5, 0], -1.0, certified=True),
    _row("exact_nonempty", 0, [5, 0], -1.0, certified=True),
    _row("exact", 0, [5, 0], -1.0, certified=True, example_id="other"),
    _row("exact", 0, [5, 0], -1.0, certified=True, run_id="other"),
    _row("exact", 0, [5, 0], -1.0, certified=True, model="other"),
])
def test_mode_only_from_a_certified_exact_best_row_of_the_same_example(mode_row):
    out = add_likelihood(pd.DataFrame([mode_row, _row("beam5", 0, [6, 0], -2.0)]))
    assert out["mode_logprob"].isna().iloc[1] and out["search_error"].isna().iloc[1]


@pytest.mark.parametrize("gap, error", [
    (-1.0, 0.0), (0.0, 0.0), (SEARCH_ERROR_TOL / 2, 0.0), (2 * SEARCH_ERROR_TOL, 1.0), (5.0, 1.0)])
def test_search_error_tolerance(gap, error):
    out = add_likelihood(pd.DataFrame([_row("exact", 0, [5, 0], -1.0, certified=True),
                                       _row("beam5", 0, [6, 0], -1.0 - gap)]))
    assert out["search_error"].tolist() == [0.0, error]


def test_add_likelihood_on_nullable_columns_keeps_the_index_and_replaces_columns():
    df = pd.DataFrame([_row("exact", 0, [5, 0], -1.0, certified=True), _row("beam5", 0, [6, 0], -2.0),
                       _row("greedy", 0, [], None)], index=[10, 3, 7])
    df = df.astype({"method": "string", "rank": "Int64", "certified": "boolean", "n_tokens": "Int64",
                    "finished": "boolean", "logprob": "Float64"})
    out = add_likelihood(df)
    assert out.index.tolist() == [10, 3, 7]
    assert out["search_error"].fillna(-1).tolist() == [0.0, 1.0, -1]
    assert add_likelihood(out).equals(out)
    assert add_likelihood(df.iloc[:0]).empty


@pytest.mark.parametrize("seed", range(3))
def test_add_likelihood_equals_the_per_row_definitions(seed):
    rng = np.random.default_rng(seed)
    lp_of = {}
    rows = []
    for i in range(80):
        tokens = [int(t) for t in rng.integers(1, 3, size=rng.integers(0, 3))] + [0]
        # one log-probability per output, up to float noise; some outputs tie
        lp = lp_of.setdefault(tuple(tokens), -float(rng.integers(1, 5))) + rng.normal(0, 1e-7)
        method = str(rng.choice(["exact", "beam5", "greedy", "sample"]))
        rows.append(_row(method, int(rng.integers(0, 2)), tokens, None if rng.random() < 0.05 else lp,
                         certified=bool(rng.random() < 0.7) if method == "exact" else None,
                         example_id=f"e{rng.integers(0, 4)}", run_id=f"r{i % 2}"))
    out = add_likelihood(pd.DataFrame(rows))
    for row, (_, got) in zip(rows, out.iterrows(), strict=True):
        group = [r for r in rows if (r["run_id"], r["example_id"]) == (row["run_id"], row["example_id"])]
        best = {}
        for r in group:
            if r["logprob"] is not None:
                best[tuple(r["token_ids"])] = max(best.get(tuple(r["token_ids"]), -math.inf), r["logprob"])
        modes = [r["logprob"] for r in group if r["method"] == "exact" and r["rank"] == 0 and r["certified"]
                 and r["logprob"] is not None]
        mode = max(modes) if modes else NAN
        assert same(got["mode_logprob"], mode)
        if row["logprob"] is None:
            assert got[["logprob_per_token", "logprob_rank", "search_error"]].isna().all()
            continue
        own = best[tuple(row["token_ids"])]
        assert got["logprob_rank"] == 1 + sum(lp > own for lp in best.values())
        assert got["logprob_per_token"] == pytest.approx(row["logprob"] / (row["n_tokens"] + 1))
        defined = row["rank"] == 0 and row["method"] != "sample" and modes
        assert same(got["search_error"], float(row["logprob"] < mode - SEARCH_ERROR_TOL) if defined else NAN)


def test_rep_consecutive_is_the_share_of_words_repeating_the_one_before():
    assert degeneracy("the the land land of", "x")["rep_consecutive"] == pytest.approx(2 / 5)
    assert degeneracy("the land the land", "x")["rep_consecutive"] == 0.0
