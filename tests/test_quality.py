"""analysis/quality.py: sentence scores and per-segment statistics equal sacreBLEU 2.6.0's, corpus scores recomputed
from the statistics equal sacrebleu.corpus_* on any subset (empty outputs included), and the signatures."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import sacrebleu
from sacrebleu.metrics import BLEU, CHRF, TER

from analysis.quality import METRICS, add_quality, corpus_score, signatures

# News-style English with typical MT errors: word order, omissions, additions, synonyms, punctuation.
REFERENCES = [
    "The government announced on Tuesday that it would raise the minimum wage next year.",
    "Heavy rain caused flooding in several villages along the river.",
    "The museum will be closed for renovation until the end of March.",
    "Scientists have discovered a new species of frog in the rainforest.",
    "The company's profits fell by ten percent in the last quarter.",
    "Thousands of people gathered in the square to celebrate the victory.",
    "The new bridge is expected to reduce traffic in the city centre.",
    "She said that the negotiations had been difficult but productive.",
    "Police are asking witnesses to come forward with any information.",
    "The team won the championship for the third year in a row.",
    "Prices for fresh vegetables have risen sharply since the summer.",
    "The minister refused to comment on the report.",
]
HYPOTHESES = [
    "The government announced Tuesday it will raise the minimum wage next year.",
    "Strong rain caused floods in several villages on the river.",
    "The museum will be closed for renovations until end of March.",
    "Scientists discovered a new frog species in the rain forest.",
    "The profits of the company fell ten percent in the last quarter.",
    "Thousands of people gathered on the square in order to celebrate the victory.",
    "The new bridge should reduce the traffic in the city center.",
    "She said the negotiations were difficult, but productive.",
    "The police ask witnesses to report with any information.",
    "The team won the championship for the third year in a row.",
    "Prices of fresh vegetables have strongly risen since summer.",
    "The minister declined to comment the report.",
]
CORPUS = {
    "bleu": lambda hyps, refs: sacrebleu.corpus_bleu(hyps, [refs]).score,
    "chrf": lambda hyps, refs: sacrebleu.corpus_chrf(hyps, [refs]).score,
    "ter": lambda hyps, refs: sacrebleu.corpus_ter(hyps, [refs]).score,
}
SENTENCE = {
    "bleu": lambda hyp, ref: sacrebleu.sentence_bleu(hyp, [ref]).score,
    "chrf": lambda hyp, ref: sacrebleu.sentence_chrf(hyp, [ref]).score,
    "ter": lambda hyp, ref: sacrebleu.sentence_ter(hyp, [ref]).score,
}
EXTRACTORS = {"bleu": BLEU, "chrf": CHRF, "ter": TER}


def _frame(hyps: list[str | None], refs: list[str | None]) -> pd.DataFrame:
    return pd.DataFrame({"example_id": [str(i) for i in range(len(hyps))], "text": hyps, "reference": refs})


@pytest.fixture(scope="module")
def scored() -> pd.DataFrame:
    return add_quality(_frame(list(HYPOTHESES), list(REFERENCES)))


EMPTY_MIXED = [None if i % 3 == 0 else h for i, h in enumerate(HYPOTHESES)]
SUBSETS = {
    "all": list(range(len(REFERENCES))),
    "first-half": list(range(len(REFERENCES) // 2)),
    "odd": list(range(1, len(REFERENCES), 2)),
    "single": [4],
    "exact-match-only": [9],
}


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("subset", SUBSETS)
def test_corpus_score_from_stats_equals_sacrebleu(scored, metric, subset):
    rows = SUBSETS[subset]
    expected = CORPUS[metric]([HYPOTHESES[i] for i in rows], [REFERENCES[i] for i in rows])
    assert corpus_score(metric, scored[f"{metric}_stats"].iloc[rows]) == expected


@pytest.mark.parametrize("metric", METRICS)
def test_corpus_score_with_empty_outputs_mixed_in(metric):
    scored = add_quality(_frame(EMPTY_MIXED, list(REFERENCES)))
    expected = CORPUS[metric]([h or "" for h in EMPTY_MIXED], REFERENCES)
    assert corpus_score(metric, scored[f"{metric}_stats"]) == expected


@pytest.mark.parametrize("metric,expected", [("bleu", 0.0), ("chrf", 0.0), ("ter", 100.0)])
def test_corpus_score_of_all_empty_outputs(metric, expected):
    scored = add_quality(_frame([None] * 3 + [""] * 3, REFERENCES[:6]))
    assert corpus_score(metric, scored[f"{metric}_stats"]) == expected
    assert CORPUS[metric]([""] * 6, REFERENCES[:6]) == expected


@pytest.mark.parametrize("metric", METRICS)
def test_stats_are_sacrebleus_own_segment_statistics(scored, metric):
    expected = EXTRACTORS[metric]()._extract_corpus_statistics(HYPOTHESES, [REFERENCES])
    assert [list(s) for s in scored[f"{metric}_stats"]] == [list(s) for s in expected]


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("index", range(len(REFERENCES)))
def test_sentence_scores_equal_sacrebleu(scored, metric, index):
    assert scored[metric].iloc[index] == SENTENCE[metric](HYPOTHESES[index], REFERENCES[index])


# Golden values from sacreBLEU 2.6.0 (sentence_bleu / sentence_chrf / sentence_ter).
GOLDEN = [
    ("The cat sat on the mat.", 100.00000000000004, 100.0, 0.0),
    ("The cat is sitting on the mat.", 41.11336169005198, 60.133907056056316, 33.33333333333333),
    ("A cat on a mat.", 16.341219448835542, 25.68300390671808, 50.0),
    ("the the the the the the the the", 5.522397783539471, 10.660885911953542, 100.0),
    ("", 0.0, 0.0, 100.0),
    (None, 0.0, 0.0, 100.0),
]


@pytest.mark.parametrize("hyp,bleu,chrf,ter", GOLDEN)
def test_golden_sentence_scores(hyp, bleu, chrf, ter):
    row = add_quality(_frame([hyp], ["The cat sat on the mat."])).iloc[0]
    assert (row["bleu"], row["chrf"], row["ter"]) == pytest.approx((bleu, chrf, ter), abs=1e-9)


def test_sentence_bleu_uses_effective_order_but_corpus_bleu_does_not():
    # Two words: no 3- or 4-gram, so corpus BLEU (no effective order) is 0 where sentence BLEU is not.
    row = add_quality(_frame(["the cat"], ["the cat sat"])).iloc[0]
    assert row["bleu"] == sacrebleu.sentence_bleu("the cat", ["the cat sat"]).score > 0
    assert corpus_score("bleu", [row["bleu_stats"]]) == sacrebleu.corpus_bleu(["the cat"], [["the cat sat"]]).score == 0


@pytest.mark.parametrize("reference", [None, np.nan])
def test_rows_without_reference_get_nan_scores_and_no_stats(reference):
    scored = add_quality(_frame(["a hypothesis", "the cat"], [reference, "the cat"]))
    for metric in METRICS:
        assert math.isnan(scored[metric].iloc[0]) and scored[f"{metric}_stats"].iloc[0] is None
        assert not math.isnan(scored[metric].iloc[1])


def test_add_quality_copies_keeps_index_and_scores_repeats_alike():
    df = _frame(["the cat", "a dog", "the cat"], ["the cat sat"] * 3).set_index(pd.Index([7, 3, 5]))
    scored = add_quality(df)
    assert "bleu" not in df.columns and list(scored.index) == [7, 3, 5]
    assert scored.loc[7, "chrf"] == scored.loc[5, "chrf"] != scored.loc[3, "chrf"]
    assert scored.loc[7, "bleu_stats"] == scored.loc[5, "bleu_stats"]


def test_stats_survive_a_parquet_round_trip(scored, tmp_path):
    with_missing = pd.concat([scored, add_quality(_frame(["x"], [None]))], ignore_index=True)
    with_missing.to_parquet(tmp_path / "rows.parquet")
    back = pd.read_parquet(tmp_path / "rows.parquet")
    for metric in METRICS:
        assert corpus_score(metric, back[f"{metric}_stats"].dropna()) == corpus_score(metric, scored[f"{metric}_stats"])


def test_corpus_score_rejects_no_segments_and_unknown_metrics():
    with pytest.raises(ValueError, match="at least one segment"):
        corpus_score("bleu", [])
    with pytest.raises(ValueError, match="unknown metric"):
        corpus_score("meteor", [[1.0, 2.0]])


def test_signatures():
    assert signatures() == {
        "bleu": "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0",
        "sentence_bleu": "nrefs:1|case:mixed|eff:yes|tok:13a|smooth:exp|version:2.6.0",
        "chrf": "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0",
        "ter": "nrefs:1|case:lc|tok:tercom|norm:no|punct:yes|asian:no|version:2.6.0",
    }
