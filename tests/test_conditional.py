"""Conditional beam search: attributes, the exact and the learned classifier, and the search's guarantees."""

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch

from analysis.degeneracy import degeneracy
from decoding import (
    Attribute,
    ExactClassifier,
    Length,
    LengthRange,
    LengthRatio,
    NGramLM,
    NotDegenerate,
    RewardAbove,
    SearchInputError,
    TabularLM,
    conditional_beam_search,
    exact_search,
)
from decoding.attributes import source_content
from decoding.hf import HFCausalLM
from models.classifier import (
    AttributeHead,
    ClassifierData,
    HiddenStateClassifier,
    classifier_folder,
    collect,
    expected_calibration_error,
    load_classifier,
    reliability,
    remaining_lengths,
    save_classifier,
    train_classifier,
)
from tests.conftest import brute_mode, enumerate_outputs, hf_lm, tiny_gpt2

LOOP = (1, 2, 3, 4) * 3  # seq-rep-4 = 1 - 4/9 > 0.5


@dataclass
class Constant:
    """An uninformative classifier (log q = 0 everywhere): conditional beam is then beam search plus the
    indicator at EOS."""

    attribute: Attribute

    def log_q(self, lm, state, source, prefixes):
        return torch.zeros(len(prefixes), lm.vocab_size)


ATTRIBUTES = [Length(3), NotDegenerate(), LengthRatio(1.0, 1.5), ~Length(0) & Length(4) | Length(1)]


@pytest.mark.parametrize(("attribute", "tokens", "source", "expected"), [
    (Length(2), (1, 2), (), True),
    (Length(2), (1,), (), False),
    (LengthRatio(0.5, 1.0), (1,), (3, 4), True),
    (LengthRatio(0.5, 1.0), (1, 2, 3), (3, 4), False),
    (LengthRatio(0.0, 9.0), (), (), False),
    (LengthRange(1, 2), (), (), False),
    (LengthRange(1, 2), (7, 7), (), True),
    (LengthRange(1, 2), (7, 7, 7), (), False),
    (NotDegenerate(), (), (3,), False),
    (NotDegenerate(), (3, 4), (3, 4), False),
    (NotDegenerate(), LOOP, (3,), False),
    (NotDegenerate(), (1, 2, 3), (3, 4), True),
    (RewardAbove(lambda y, x: sum(y), 5.0, "sum"), (2, 3), (), True),
    (RewardAbove(lambda y, x: sum(y), 5.0, "sum"), (2, 2), (), False),
    (Length(1) & NotDegenerate(), (3,), (3,), False),
    (Length(1) | NotDegenerate(), (3,), (3,), True),
    (~Length(1), (3,), (), False),
])
def test_attribute_values(attribute, tokens, source, expected):
    assert attribute(tokens, source) is expected


def test_attribute_names_identify_parameters():
    assert Length(3).name == "length(3)"
    assert (~Length(1) & LengthRatio(0.5, 2) | NotDegenerate()).name == \
        "or(and(not(length(1)),length_ratio(0.5,2)),not_degenerate)"
    assert NotDegenerate(detokenize=str).name == "not_degenerate_text"
    assert RewardAbove(len, 2.0, "len").name == "reward_above(len,2.0)"


def test_accepts_ignores_the_trailing_source_eos():
    """As a constraint an attribute sees the source without the EOS that Marian/T5 tokenizers append."""
    assert source_content((3, 4, 0), 0) == (3, 4)
    assert not NotDegenerate().accepts((3, 4), (3, 4, 0), 0)
    assert LengthRatio(1.0, 1.0).accepts((1, 2), (3, 4, 0), 0)


@pytest.mark.parametrize("text", ["", "a b c", "a b c d " * 4, "the cat sat", "x y"])
def test_not_degenerate_on_text_is_the_analysis_flag(text):
    vocab = ["a", "b", "c", "d", "the", "cat", "sat", "x", "y"]
    tokens = tuple(vocab.index(w) for w in text.split())
    source = tuple(vocab.index(w) for w in ["the", "cat", "sat"])
    detok = lambda ids: " ".join(vocab[i] for i in ids)  # noqa: E731
    assert NotDegenerate(detokenize=detok)(tokens, source) is not degeneracy(text, "the cat sat")["degenerate"]


@pytest.mark.parametrize(("attribute", "exact"), [
    (Length(3), True), (LengthRange(2, 5), True), (LengthRatio(0.3, 0.7), True), (LengthRatio(1.0, 2.5), True),
    (Length(2) & LengthRatio(0.5, 3.0), True), (Length(1) | Length(4), False)])
def test_length_range_bounds_the_lengths_with_the_attribute(attribute, exact):
    """Exactly for length attributes and their conjunctions; a disjunction gets the enclosing range."""
    for n_source in range(0, 12):
        source = (5,) * n_source
        lo, hi = attribute.length_range(source)
        lengths = [n for n in range(40) if attribute((1,) * n, source)]
        assert all(lo <= n <= hi for n in lengths)
        assert lengths == list(range(lo, hi + 1)) or not exact
    assert NotDegenerate().length_range((1,)) is None
    assert (~Length(2)).length_range(()) is None


@pytest.mark.parametrize("attribute", ATTRIBUTES)
@pytest.mark.parametrize("source", [(1, 3), (2, 3, 0)])
def test_exact_classifier_is_the_conditional_probability(attribute, source):
    """q(A | prefix . v) = sum over outputs extending prefix . v that have A of p(y | prefix . v), by enumeration."""
    lm, max_len = NGramLM.random(4, order=3, seed=1, eos_bias=-0.5), 4
    outputs = enumerate_outputs(lm, source, max_len)
    clf = ExactClassifier(lm, attribute, max_len)
    content = source_content(source, lm.eos_id)
    prefixes = {y[:n] for y, _ in outputs for n in range(len(y))}
    log_q = clf.log_q(lm, None, source, sorted(prefixes))
    for prefix, row in zip(sorted(prefixes), log_q, strict=True):
        assert row[lm.eos_id].exp() == float(attribute(prefix, content))
        for v in range(1, lm.vocab_size):
            longer = prefix + (v,)
            p_longer = math.exp(float(lm.score(source, longer).sum()))
            mass = sum(math.exp(lp) for y, lp in outputs if y[:len(longer)] == longer and attribute(y[:-1], content))
            expected = mass / p_longer if len(longer) <= max_len else 0.0
            assert float(row[v].exp()) == pytest.approx(expected, abs=1e-12)


def _lms():
    return [NGramLM.random(5, order=3, seed=s, eos_bias=-1.0) for s in range(3)] + \
        [TabularLM.random(4, 4, seed=s) for s in range(2)]


@pytest.mark.parametrize("attribute", ATTRIBUTES)
@pytest.mark.parametrize("lm", _lms(), ids=lambda lm: type(lm).__name__)
def test_wide_beam_with_exact_classifier_is_the_conditional_mode(lm, attribute):
    source, max_len = (1, 3), 4
    res = conditional_beam_search(lm, source, attribute=attribute, classifier=ExactClassifier(lm, attribute, max_len),
                                  beam_size=5 ** max_len, max_len=max_len)
    mode, lp = brute_mode(lm, source, max_len, constraints=[attribute])
    assert res.best.token_ids == mode
    assert res.best.logprob == pytest.approx(lp, abs=1e-9)
    assert res.best.score == pytest.approx(lp, abs=1e-9)
    exact = exact_search(lm, source, max_len=max_len, constraints=[attribute])
    assert exact.best.token_ids == mode


@pytest.mark.parametrize("attribute", ATTRIBUTES)
@pytest.mark.parametrize("seed", range(4))
def test_exact_classifier_never_leads_a_beam_into_a_dead_end(seed, attribute):
    """With exact q a prefix is kept only if some output with A extends it, so even a beam of one finishes in A;
    without a classifier the same beam can end with nothing."""
    lm, source, max_len = NGramLM.random(5, order=3, seed=seed, eos_bias=-1.0), (1, 3), 4
    res = conditional_beam_search(lm, source, attribute=attribute, classifier=ExactClassifier(lm, attribute, max_len),
                                  beam_size=1, max_len=max_len)
    assert len(res.hypotheses) == 1
    assert attribute.accepts(res.best.token_ids[:-1], source, lm.eos_id)


@pytest.mark.parametrize("attribute", ATTRIBUTES)
@pytest.mark.parametrize("candidates", [None, 1, 2])
def test_indicator_at_eos_keeps_every_hypothesis_in_the_attribute(attribute, candidates):
    lm, source = NGramLM.random(6, order=3, seed=2, eos_bias=-0.5), (2, 3, 0)
    res = conditional_beam_search(lm, source, attribute=attribute, classifier=Constant(attribute), beam_size=4,
                                  max_len=6, candidates=candidates)
    for hyp in res.hypotheses:
        assert hyp.finished and attribute(hyp.token_ids[:-1], source_content(source, lm.eos_id))
        assert hyp.logprob == pytest.approx(float(lm.score(source, hyp.token_ids).sum()), abs=1e-9)
        assert hyp.score == pytest.approx(hyp.logprob, abs=1e-9)
    assert [h.score for h in res.hypotheses] == sorted((h.score for h in res.hypotheses), reverse=True)
    # one batched classifier call per step, on the prefixes the model scored (the last extension, once the beam
    # has finished, is scored by the model only)
    assert 0 < res.stats.extra["classifier_calls"] <= res.stats.forward_calls
    assert 0 < res.stats.extra["classifier_rows"] <= res.stats.nodes


def test_candidates_are_the_models_most_probable_tokens():
    lm, source, k = NGramLM.random(8, order=2, seed=0, eos_bias=-1.0), (3,), 2
    attribute = Length(4)
    res = conditional_beam_search(lm, source, attribute=attribute, classifier=ExactClassifier(lm, attribute, 5),
                                  beam_size=3, max_len=5, candidates=k)
    assert res.hypotheses
    for hyp in res.hypotheses:
        state = lm.start(source)
        for token in hyp.token_ids:
            row = lm.logprobs(state)[0]
            assert row[token] >= torch.topk(row, k).values[-1]
            state = lm.extend(state, torch.tensor([token]))


def test_bad_arguments_are_rejected():
    lm = NGramLM.random(4, seed=0)
    clf = ExactClassifier(lm, Length(2), 3)
    with pytest.raises(SearchInputError, match="predicts 'length\\(2\\)'"):
        conditional_beam_search(lm, (1,), attribute=Length(3), classifier=clf, beam_size=2, max_len=3)
    with pytest.raises(SearchInputError, match="candidates"):
        conditional_beam_search(lm, (1,), attribute=Length(2), classifier=clf, beam_size=2, max_len=3, candidates=0)
    with pytest.raises(SearchInputError, match="beam_size"):
        conditional_beam_search(lm, (1,), attribute=Length(2), classifier=clf, beam_size=0, max_len=3)
    with pytest.raises(SearchInputError, match="built with"):
        clf.log_q(NGramLM.random(4, seed=1), None, (1,), [()])
    with pytest.raises(SearchInputError, match="hidden states"):
        conditional_beam_search(lm, (1,), attribute=Length(2), classifier=_random_classifier(4, 8, Length(2)),
                                beam_size=2, max_len=3)


def _random_classifier(vocab_size, d_model, attribute, seed=0):
    torch.manual_seed(seed)
    head = AttributeHead(d_model, vocab_size, width=8, max_remaining=4)
    with torch.no_grad():
        head.out.weight.normal_()
    return HiddenStateClassifier(head.eval(), attribute)


def _mixed_state(lm, source):
    """Rows of depth 0, 1 and 2 of one source, batched into one state."""
    root = lm.start(source)
    one = lm.extend(lm.select(root, torch.tensor([0, 0, 0])), torch.tensor([1, 2, 3]))
    two = lm.extend(lm.select(one, torch.tensor([2, 0])), torch.tensor([4, 1]))
    return lm.concat([two, root, one]), [(3, 4), (1, 1), (), (1,), (2,), (3,)]


def test_hidden_is_the_final_hidden_state_and_batches_like_single_rows(kind):
    lm, source = hf_lm(kind, 0)
    state, prefixes = _mixed_state(lm, source)
    hidden = lm.hidden(state)
    for row, prefix in enumerate(prefixes):
        with torch.no_grad():
            if isinstance(lm, HFCausalLM):
                out = lm.model(input_ids=torch.tensor([source + prefix]), output_hidden_states=True)
                expected = out.hidden_states[-1][0, -1]
            else:
                out = lm.model(input_ids=torch.tensor([source]), output_hidden_states=True,
                               decoder_input_ids=torch.tensor([(lm.decoder_start_id, *prefix)]))
                expected = out.decoder_hidden_states[-1][0, -1]
        assert torch.allclose(hidden[row], expected, atol=1e-5)
    assert lm.hidden(lm.without_logprobs(state)).shape == (len(prefixes), 0)


def test_batched_classifier_scoring_equals_unbatched(kind):
    lm, source = hf_lm(kind, 1)
    state, prefixes = _mixed_state(lm, source)
    clf = _random_classifier(lm.vocab_size, lm.hidden(state).shape[1], LengthRatio(0.5, 1.0))
    batched = clf.log_q(lm, state, source, prefixes)
    assert batched.shape == (len(prefixes), lm.vocab_size)
    assert batched.std() > 0.1  # not the prior everywhere: the comparison is not vacuous
    with pytest.raises(SearchInputError, match="trained on a model with 7 tokens"):
        _random_classifier(7, lm.hidden(state).shape[1], LengthRatio(0.5, 1.0)).log_q(lm, state, source, prefixes)
    for row, prefix in enumerate(prefixes):
        single = clf.log_q(lm, lm.select(state, torch.tensor([row])), source, [prefix])
        assert torch.allclose(batched[row], single[0], atol=1e-5)


def test_remaining_lengths():
    assert remaining_lengths(Length(3), (), [0, 2, 5]).tolist() == [[2, 2], [0, 0], [-3, -3]]
    assert remaining_lengths(LengthRatio(0.5, 1.0), (7, 7, 7, 7), [1]).tolist() == [[0, 2]]
    assert (remaining_lengths(NotDegenerate(), (), [0, 1]) < -10 ** 6).all()


def test_collect_labels_the_models_own_samples_at_every_prefix():
    lm = HFCausalLM(tiny_gpt2(0, scale=1.5))
    sources, attribute, n_samples, max_len = [(3, 4), (5,), (2, 3, 4)], Length(2) | Length(3), 5, 6
    data = collect(lm, sources, attribute, n_samples=n_samples, max_len=max_len, seed=3, progress=False)
    assert data.attribute == attribute.name and data.vocab_size == lm.vocab_size
    assert data.hidden.shape == (len(data), 16)
    assert 0 < data.label.float().mean() < 1
    assert sorted(data.sample_index.unique().tolist()) == list(range(len(sources) * n_samples))
    for s in data.sample_index.unique().tolist():
        rows = (data.sample_index == s).nonzero()[:, 0]
        rows = rows[data.position[rows].argsort()]
        assert data.position[rows].tolist() == list(range(len(rows)))
        y = tuple(data.token[rows].tolist())
        source = sources[int(data.source_index[rows[0]])]
        assert data.label[rows].unique().tolist() == [y[-1] == lm.eos_id and attribute(y[:-1], source)]
        state = lm.start(source)
        for t, row in enumerate(rows.tolist()):
            assert torch.allclose(data.hidden[row], lm.hidden(state)[0], atol=1e-5)
            state = lm.extend(state, torch.tensor([y[t]]))


def _separable_data(n=6000, d=8, vocab_size=5, seed=0):
    """A toy attribute that a head can learn: A iff hidden[0] + [token == 2] > 0.5 and at most 2 tokens remain;
    with a margin of 0.25 around the boundary."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, d, generator=g)
    token = torch.randint(vocab_size, (n,), generator=g)
    hidden[:, 0] += 0.25 * torch.sign(hidden[:, 0] + (token == 2).float() - 0.5)
    remaining = torch.randint(-2, 7, (n, 1), generator=g).repeat(1, 2)
    label = (hidden[:, 0] + (token == 2).float() > 0.5) & (remaining[:, 0] <= 2)
    position = torch.randint(0, 6, (n,), generator=g)
    source = torch.randint(0, 40, (n,), generator=g)
    return ClassifierData(hidden, token, label, position, remaining, source, torch.arange(n), vocab_size,
                          Length(4).name, {"model": "synthetic"})


def test_training_learns_a_separable_attribute():
    data = _separable_data(n=4000)
    clf, metrics = train_classifier(data, Length(4), epochs=25, batch_size=256, lr=3e-3, width=32,
                                    max_remaining=8, progress=False)
    assert metrics.accuracy > 0.95
    assert metrics.loss < metrics.history["held_out_loss"].iloc[0] / 3
    assert metrics.ece < 0.05
    assert 0 < metrics.n_held_out < len(data) and metrics.n_train + metrics.n_held_out == len(data)
    assert list(metrics.by_position.columns) == ["position", "n", "accuracy", "mean_q", "positive_rate", "loss"]
    assert metrics.by_position["n"].sum() == metrics.n_held_out
    assert len(metrics.reliability) == 10 and metrics.reliability["n"].sum() == metrics.n_held_out
    assert clf.attribute == Length(4) and clf.model == {"model": "synthetic"}


def test_an_untrained_head_predicts_the_prior():
    head = AttributeHead(8, 5, prior=0.2)
    q = torch.sigmoid(head(torch.randn(3, 8), remaining_lengths(Length(2), (), [0, 1, 2])))
    assert torch.allclose(q, torch.full((3, 5), 0.2))


def test_training_rejects_data_of_another_attribute():
    with pytest.raises(ValueError, match="labelled by"):
        train_classifier(_separable_data(n=50), Length(3), epochs=1, progress=False)


def test_reliability_and_ece_golden_values():
    q = np.array([0.05, 0.15, 0.95, 0.95, 1.0])
    label = np.array([0, 1, 1, 0, 1])
    table = reliability(q, label, bins=10)
    assert table["n"].tolist() == [1, 1, 0, 0, 0, 0, 0, 0, 0, 3]
    assert table.loc[9, "mean_q"] == pytest.approx((0.95 + 0.95 + 1.0) / 3)
    assert table.loc[9, "positive_rate"] == pytest.approx(2 / 3)
    assert math.isnan(table.loc[4, "mean_q"])
    expected = (0.05 + 0.85 + 3 * abs((0.95 + 0.95 + 1.0) / 3 - 2 / 3)) / 5
    assert expected_calibration_error(table) == pytest.approx(expected)


def test_save_and_load_under_the_model_in_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LQ_CACHE", str(tmp_path))
    data = _separable_data(n=400)
    clf, metrics = train_classifier(data, Length(4), epochs=2, width=16, max_remaining=8, progress=False)
    folder = save_classifier(clf, classifier_folder("org/tiny", Length(4)), metrics)
    assert folder == tmp_path / "classifiers" / "org_tiny" / "length(4)"
    assert pd.read_csv(folder / "reliability.csv").shape == metrics.reliability.shape
    loaded = load_classifier(folder, Length(4))
    x, rem = torch.randn(3, 8), remaining_lengths(Length(4), (), [0, 1, 2])
    with torch.no_grad():
        assert torch.equal(loaded.head(x, rem), clf.head(x, rem))
    assert loaded.model == clf.model
    with pytest.raises(ValueError, match="predicts 'length\\(4\\)', not 'length\\(5\\)'"):
        load_classifier(folder, Length(5))
    with pytest.raises(FileNotFoundError, match="no classifier"):
        load_classifier(classifier_folder("org/tiny", Length(5)), Length(5))


def test_learned_classifier_in_conditional_beam_on_a_tiny_model():
    lm = HFCausalLM(tiny_gpt2(2, scale=1.5))
    attribute = LengthRatio(1.0, 2.0)
    sources = [(3, 4), (5, 2), (4,), (2, 3, 4), (3,), (5, 5)]
    data = collect(lm, sources, attribute, n_samples=6, max_len=6, progress=False)
    clf, _ = train_classifier(data, attribute, epochs=5, width=16, max_remaining=8, progress=False)
    for source in sources[:3]:
        res = conditional_beam_search(lm, source, attribute=attribute, classifier=clf, beam_size=3, max_len=6,
                                      candidates=4)
        assert res.stats.extra["classifier_calls"] > 0 and res.stats.forward_calls > 0
        for hyp in res.hypotheses:
            assert attribute(hyp.token_ids[:-1], source)
            assert hyp.logprob == pytest.approx(float(lm.score(source, hyp.token_ids).sum()), abs=1e-4)
