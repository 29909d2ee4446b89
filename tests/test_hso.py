"""HSO and dynamic evaluation: exactness at lr = 0, adaptation, frozen / restored weights, moments that travel with
their cache entries, and HSO as a LanguageModel checked like every adapter."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from decoding import beam_search, exact_search, greedy_search
from models.errors import ConfigError
from models.hso import HSO, HSOLM, DynamicEvaluation, NoAdaptation, Window, _target_logprobs
from tests.conftest import brute_mode, tiny_gemma3, tiny_gpt2, tiny_llama, tiny_qwen2

TEXT = [1, 2, 3, 4, 2, 3, 1, 2, 4, 4, 3, 2, 1, 3, 4, 2, 3, 2, 1, 4, 3]

BUILDS = {"gpt2": tiny_gpt2, "llama": tiny_llama, "qwen2": tiny_qwen2,
          "gemma3": lambda seed: tiny_gemma3(seed, sliding_window=32)}
REPEATED = TEXT + TEXT[:10]  # within every tiny model's 32 positions


@pytest.fixture(params=list(BUILDS))
def model(request):
    return BUILDS[request.param](0).double()


def teacher_forced(model, ids):
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, :-1]
    return torch.log_softmax(logits, -1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]


def parameters(model):
    return [p.detach().clone() for p in model.parameters()]


def unchanged(model, before):
    return all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize("scorer", [
    lambda m: NoAdaptation(m, segment=4, window=24),
    lambda m: HSO(m, lr=0.0, steps_per_segment=3, segment=4, window=24),
    lambda m: DynamicEvaluation(m, lr=0.0, segment=5, window=24),
    lambda m: HSO(m, lr=0.0, segment=24, window=8),
], ids=["none", "hso", "dynamic_eval", "one_segment"])
def test_lr_zero_is_teacher_forced_scoring(model, scorer):
    """With a window that holds the whole text, streaming in segments changes nothing."""
    assert torch.allclose(scorer(model).score_text(TEXT), teacher_forced(model, TEXT), atol=1e-6, rtol=0)


def test_one_hso_step_lowers_the_adapted_texts_nll(model):
    """HSO re-scores a segment better after one step on its own NLL, and the parameters are bit-identical."""
    before = parameters(model)
    flags = [p.requires_grad for p in model.parameters()]
    hso = HSO(model, lr=0.05, segment=8, window=24)
    ids = TEXT[:17]
    window = Window.fresh(*_cache(hso, ids[:8]))
    targets = torch.tensor(ids[9:17])
    allowed = torch.ones(8, 16, dtype=torch.bool)
    allowed[:, 8:] = torch.ones(8, 8, dtype=torch.bool).tril()
    with hso._session():
        with torch.enable_grad():
            first, _ = hso._adapt(window, ids[8:16], torch.arange(8, 16), targets, allowed)
        with torch.no_grad():
            after = _target_logprobs(hso.forward(ids[8:16], torch.arange(8, 16), window.kv, allowed).logits, targets)
    assert after.sum() > first.sum()
    assert unchanged(model, before)
    assert [p.requires_grad for p in model.parameters()] == flags


def _cache(hso, ids):
    with torch.no_grad():
        fwd = hso.forward(ids, torch.arange(len(ids)), None, torch.ones(len(ids), len(ids), dtype=torch.bool).tril())
    return fwd.kv, torch.arange(len(ids))


def test_hso_improves_a_repeated_text_and_leaves_weights_bit_identical(model):
    before = parameters(model)
    ids = REPEATED
    plain = NoAdaptation(model, segment=4, window=12).score_text(ids)
    adapted = HSO(model, lr=0.01, steps_per_segment=2, segment=4, window=12).score_text(ids)
    assert torch.equal(adapted[:4], plain[:4])  # the first segment has no cache to adapt
    assert adapted.sum() > plain.sum()
    assert unchanged(model, before)


class Recording(HSO):
    """Snapshots the window (positions, moments, steps) before and after each segment's update."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.log = []

    def _segment(self, window, ids, positions, targets):
        def snap(w):
            return None if w is None else (w.positions.clone(), w.m.clone(), w.v.clone(), w.steps.clone())

        before = snap(window)
        out = super()._segment(window, ids, positions, targets)
        self.log.append((before, snap(window), positions.clone()))
        return out


def test_moments_follow_their_entries_as_the_window_slides():
    model = tiny_llama(2).double()
    hso = Recording(model, lr=0.02, steps_per_segment=2, segment=3, window=7)
    hso.score_text(TEXT)
    for (_, after, seg), (before_next, _, _) in zip(hso.log, hso.log[1:], strict=False):
        if before_next is None or after is None:
            continue
        pos_after, m_after, v_after, steps_after = after
        pos_next, m_next, v_next, steps_next = before_next
        assert len(pos_next) <= 7 and pos_next[-1].item() == seg[-1].item()  # the last 7 tokens, newest last
        for j, p in enumerate(pos_next.tolist()):
            if p in pos_after.tolist():
                i = pos_after.tolist().index(p)
                assert torch.equal(m_next[:, :, :, j], m_after[:, :, :, i])
                assert torch.equal(v_next[:, :, :, j], v_after[:, :, :, i])
                assert steps_next[j] == steps_after[i]
            else:  # arrived with the last segment: fresh moments
                assert steps_next[j] == 0 and not m_next[:, :, :, j].any()
    # an entry's step count is the number of updates it has seen: 2 per segment since it arrived
    pos, _, _, steps = hso.log[-1][1]
    arrived = {p: k for k, (_, _, seg) in enumerate(hso.log) for p in seg.tolist()}
    assert [s.item() for s in steps] == [2 * (len(hso.log) - 1 - arrived[p]) for p in pos.tolist()]


def test_dynamic_evaluation_adapts_and_restores_the_weights(model):
    before = parameters(model)
    flags = [p.requires_grad for p in model.parameters()]
    ids = REPEATED
    plain = NoAdaptation(model, segment=4, window=12).score_text(ids)
    for params in ("all", "norms_biases"):
        adapted = DynamicEvaluation(model, lr=0.002, decay=0.02, params=params, segment=4, window=12).score_text(ids)
        assert not torch.equal(adapted, plain)
        assert unchanged(model, before)
        assert [p.requires_grad for p in model.parameters()] == flags
    assert DynamicEvaluation(model, lr=0.002, segment=4, window=12).score_text(ids).sum() > plain.sum()


def test_bad_settings_are_refused():
    model = tiny_llama(0)
    for kwargs, match in [({"lr": -1.0}, "lr"), ({"lr": 0.1, "steps_per_segment": 1.5}, "steps_per_segment"),
                          ({"lr": 0.1, "states": "q"}, "states"), ({"lr": 0.1, "betas": (0.9, 1.0)}, "betas"),
                          ({"lr": 0.1, "segment": 0}, "segment")]:
        with pytest.raises(ConfigError, match=match):
            HSO(model, **kwargs)
    with pytest.raises(ConfigError, match="sliding attention window"):
        HSO(tiny_gemma3(0, sliding_window=16), lr=0.1, segment=8, window=12)
    assert HSO(tiny_gemma3(0, sliding_window=16), lr=0.1, segment=4).window == 12
    with pytest.raises(Exception, match="exceeds the model's 32 positions"):
        NoAdaptation(model).score_text(TEXT * 2)


def hso_lm(build, seed, lr=0.05, steps=3):
    return HSOLM(HSO(build(seed), lr=lr, steps_per_segment=steps, segment=8))


@pytest.mark.parametrize("kind", list(BUILDS))
def test_hso_lm_rows_batch_like_single_rows_and_equal_score(kind):
    lm = hso_lm(BUILDS[kind], 0)
    source = (3, 4, 2, 1)
    root = lm.start(source)
    a = lm.extend(root, torch.tensor([4]))
    b = lm.extend(lm.extend(a, torch.tensor([2])), torch.tensor([1]))
    batch = lm.extend(lm.concat([root, b, a]), torch.tensor([1, 3, 4]))
    single = [lm.extend(s, torch.tensor([t])) for s, t in [(root, 1), (b, 3), (a, 4)]]
    assert torch.allclose(lm.logprobs(batch), torch.cat([lm.logprobs(s) for s in single]), atol=1e-5)
    forced = lm.score(source, (4, 2, 1, 3))
    cached = [lm.logprobs(s)[0, t] for s, t in [(root, 4), (a, 2), (lm.extend(a, torch.tensor([2])), 1), (b, 3)]]
    assert torch.allclose(torch.stack(cached), forced, atol=1e-5)


def test_hso_lm_changes_the_distribution_and_lr_zero_does_not():
    from decoding.hf import HFCausalLM

    model = tiny_gpt2(3)
    base = HFCausalLM(model)
    source, target = (3, 4, 2, 3, 4, 2), (3, 4, 0)
    plain = base.score(source, target)
    assert torch.allclose(HSOLM(HSO(model, lr=0.0, steps_per_segment=3)).score(source, target), plain, atol=1e-6)
    adapted = HSOLM(HSO(model, lr=0.1, steps_per_segment=3))
    assert not torch.allclose(adapted.score(source, target), plain, atol=1e-3)
    assert adapted.signature()["hso"] == {"method": "hso", "segment": 32, "window": 512, "lr": 0.1, "steps": 3,
                                          "betas": [0.9, 0.999], "states": "kv"}


@pytest.mark.parametrize("kind,seed", [("gpt2", 0), ("llama", 1), ("qwen2", 2)])
def test_exact_search_on_hso_equals_brute_force(kind, seed):
    lm = hso_lm(BUILDS[kind], seed, lr=0.1)
    source = (2, 4, 3)
    for min_len in (0, 2):
        mode, lp = brute_mode(lm, source, 4, min_len)
        res = exact_search(lm, source, max_len=4, min_len=min_len, batch_size=3)
        assert res.certified and res.best.token_ids == mode
        assert res.best.logprob == pytest.approx(lp, abs=1e-5)
    greedy = greedy_search(lm, source, max_len=4)
    beam = beam_search(lm, source, beam_size=3, max_len=4)
    for hyp in (greedy.best, beam.best):
        assert hyp.logprob == pytest.approx(float(lm.score(source, hyp.token_ids).sum()), abs=1e-5)


@pytest.fixture(scope="module")
def tiny_causal_dir(tmp_path_factory):
    """A tiny Llama with a byte-level BPE tokenizer (a newline is one token) trained on Bible verses."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from experiments.corpora import load_corpus

    bible = load_corpus("bible-de-en", split="train", limit=300)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([*bible["source"], *bible["target"], "German: English:\n"],
                            trainers.BpeTrainer(vocab_size=400, special_tokens=["<eos>"],
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    path = tmp_path_factory.mktemp("tiny-llama")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", bos_token="<eos>")
    fast.save_pretrained(path)
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(fast), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                 num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                                 bos_token_id=0, eos_token_id=0)).save_pretrained(path)
    return path


def test_modes_searches_the_hso_adapted_model(tiny_causal_dir, tmp_path):
    from experiments import modes
    from experiments.config import load_config

    def config(**kw):
        return load_config(modes.ModesConfig, "modes", overrides={
            "model": str(tiny_causal_dir), "n": 2, "max_source_tokens": 60, "beam_sizes": [1, 2], "max_len": 12,
            "max_seconds": 1.0, "n_samples": 0, "shots": 0, "length_offsets": [0]} | kw)

    plain = pd.read_parquet(modes.main(config(), tmp_path / "plain") / "rows.parquet")
    adapted = pd.read_parquet(modes.main(config(hso_steps=2, hso_lr=0.05), tmp_path / "hso") / "rows.parquet")
    assert set(adapted["model"]) == {f"{tiny_causal_dir}+hso(lr=0.05,steps=2)"}
    assert json.loads(adapted["signature"].iloc[0])["hso"]["steps"] == 2
    key = ["example_id", "method", "rank"]
    both = plain.merge(adapted, on=key, suffixes=("_plain", "_hso"))
    assert len(both) == len(plain) and not np.allclose(both["logprob_plain"], both["logprob_hso"])
    with pytest.raises(ConfigError, match="encoder-decoder"):
        modes.work(config(model="bible-de-en-marian", hso_steps=1), 1)


def test_a_sliding_window_with_sink_tokens_sees_the_first_tokens_and_the_last_ones():
    model = tiny_llama(4).double()
    ids = [1, 3, 4, 2, 5, 3, 4, 1, 2, 5, 4, 3, 2, 1, 5, 4, 3]
    segment, window, sink = 2, 5, 2
    got = NoAdaptation(model, segment=segment, window=window, sink=sink).score_text(ids)
    n = len(ids) - 1  # every fed token: the cache before its segment, then its own segment's earlier tokens
    allowed = torch.zeros(n, n, dtype=torch.bool)
    for a in range(0, n, segment):
        past = list(range(a)) if a <= window else [*range(sink), *range(a - (window - sink), a)]
        for i in range(a, min(a + segment, n)):
            allowed[i, past] = True
            allowed[i, a: i + 1] = True
    hso = NoAdaptation(model)
    logits = hso.forward(ids[:-1], torch.arange(n), None, allowed).logits
    torch.testing.assert_close(got, _target_logprobs(logits, torch.tensor(ids[1:])), atol=1e-8, rtol=0)
    plain = NoAdaptation(model, segment=segment, window=window).score_text(ids)
    assert not torch.allclose(got, plain)
    assert NoAdaptation(model, window=5, sink=2).settings()["sink"] == 2 and "sink" not in hso.settings()
    with pytest.raises(ConfigError, match="sink"):
        NoAdaptation(model, window=4, sink=4)
