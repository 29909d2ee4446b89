"""RUM-SUNDAE (models/nar.py) on tiny BERT configs."""

import dataclasses

import pytest
import torch
from transformers import BertConfig, BertModel

from models.errors import ConfigError
from models.nar import RumSundae, corrupt, decode, random_tokens, sundae_loss

SPECIALS = (0, 1, 2, 3)  # pad, cls, sep, mask


def body(seed=0):
    torch.manual_seed(seed)
    return BertModel(BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=32, max_position_embeddings=32, pad_token_id=0),
                     add_pooling_layer=False)


def model(seed=0, **kw):
    return RumSundae(body(seed), max_target=12, special_ids=SPECIALS, **kw)


def batch():
    src = torch.tensor([[5, 6, 7, 8], [9, 10, 0, 0]])
    tgt = torch.tensor([[11, 12, 13], [14, 15, 0]])
    return src, src != 0, tgt, tgt != 0


def test_encoder_and_decoder_start_from_the_mlm_weights():
    b = body(1)
    m = RumSundae(b, max_target=12, special_ids=SPECIALS)
    assert m.encoder is b
    ref = b.state_dict()
    for name, value in m.decoder_embeddings.state_dict().items():
        assert torch.equal(value, ref[f"embeddings.{name}"])
    for i, layer in enumerate(m.decoder_layers):
        for part in ("attention", "intermediate", "output"):
            for name, value in getattr(layer, part).state_dict().items():
                assert torch.equal(value, ref[f"encoder.layer.{i}.{part}.{name}"])
    assert m.decoder_embeddings.word_embeddings.weight.data_ptr() != b.embeddings.word_embeddings.weight.data_ptr()


def test_the_decoder_is_bidirectional_and_never_predicts_special_tokens():
    m = model().eval()
    src, src_keep, tgt, tgt_keep = batch()
    with torch.no_grad():
        enc = m.encode(src, src_keep)
        a = m(enc, src_keep, tgt, tgt_keep)
        later = tgt.clone()
        later[0, 2] = 20
        b = m(enc, src_keep, later, tgt_keep)
    assert not torch.allclose(a[0, 0], b[0, 0])  # a later token changes an earlier position
    assert torch.allclose(a[1, :2], b[1, :2])  # the other row is untouched
    assert a.shape[-1] == 40 - len(SPECIALS) and not torch.isin(m.output_ids, torch.tensor(SPECIALS)).any()


def test_a_restricted_output_vocabulary_predicts_and_corrupts_with_its_tokens_only():
    outputs = [1, *range(5, 25)]  # 1 is special: dropped
    m = model(output_ids=outputs).eval()
    src, src_keep, tgt, tgt_keep = batch()
    assert m.output_ids.tolist() == list(range(5, 25)) and m.output_index[7] == 2 and m.output_index[30] == -100
    with torch.no_grad():
        assert m(m.encode(src, src_keep), src_keep, tgt, tgt_keep).shape == (2, 3, 20)
    noisy = corrupt(m, tgt.repeat(50, 1), tgt_keep.repeat(50, 1), torch.Generator().manual_seed(0))
    assert torch.isin(noisy[noisy != 0], torch.tensor([*outputs[1:], *tgt.view(-1).tolist()])).all()
    out = decode(m, [5, 6, 7], steps=3, lengths=2)
    assert set(out.tokens) <= set(outputs[1:])
    loss, _ = sundae_loss(m, src, src_keep, tgt, tgt_keep)
    assert torch.isfinite(loss)
    with pytest.raises(ConfigError, match="output_ids"):
        model(output_ids=[0, 1])


def test_a_few_training_steps_lower_the_loss():
    m = model()
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    src, src_keep, tgt, tgt_keep = batch()
    first = None
    for step in range(30):
        loss, parts = sundae_loss(m, src, src_keep, tgt, tgt_keep, unroll=2,
                                  generator=torch.Generator().manual_seed(step))
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.7 * first and set(parts) == {"length", "unroll1", "unroll2"}
    with pytest.raises(ConfigError, match="unroll"):
        sundae_loss(m, src, src_keep, tgt, tgt_keep, unroll=0)


def test_corruption_keeps_padding_and_uses_no_special_token():
    m = model()
    _, _, tgt, keep = batch()
    noisy = corrupt(m, tgt.repeat(50, 1), keep.repeat(50, 1), torch.Generator().manual_seed(0))
    assert (noisy[~keep.repeat(50, 1)] == 0).all()
    assert not torch.isin(noisy[keep.repeat(50, 1)], torch.tensor(SPECIALS)).any()
    assert (noisy != tgt.repeat(50, 1)).any() and (noisy == tgt.repeat(50, 1))[keep.repeat(50, 1)].any()


def test_zero_steps_return_the_initial_tokens_and_decoding_is_deterministic():
    m = model()
    src = [5, 6, 7]
    zero = decode(m, src, steps=0, lengths=1, seed=3)
    initial = random_tokens(m, (1, zero.length), torch.Generator().manual_seed(3))[0].tolist()
    assert zero.tokens == initial and zero.steps == 0
    a, b = decode(m, src, steps=4, lengths=2, seed=1), decode(m, src, steps=4, lengths=2, seed=1)
    assert (a.tokens, a.length, a.steps) == (b.tokens, b.length, b.steps) and 1 <= a.steps <= 4
    longer = decode(m, src, steps=16, lengths=2, seed=1)
    assert longer.steps + 1 <= longer.forwards <= 17
    if a.forwards < 5:  # every candidate stopped changing within 4 steps: more steps change nothing
        assert (longer.tokens, longer.forwards) == (a.tokens, a.forwards)
    else:
        assert longer.forwards > a.forwards
    if a.steps < 4:  # the winner had stopped changing; with these weights it stays the winner
        assert longer.tokens == a.tokens


def test_batched_candidates_refine_as_each_would_alone():
    m = model(3)
    src = [5, 6, 7, 8, 9]
    both = decode(m, src, steps=6, lengths=3, seed=2)
    with torch.inference_mode():
        enc = m.encode(torch.tensor([src]), torch.ones(1, 5, dtype=torch.bool))
        lengths = (m.length_logits(enc, torch.ones(1, 5, dtype=torch.bool))[0].topk(3).indices + 1).tolist()
    generator = torch.Generator().manual_seed(2)
    starts = [random_tokens(m, (n,), generator) for n in lengths]
    best = None
    for tokens in starts:
        tokens, keep = tokens[None], torch.ones(1, len(tokens), dtype=torch.bool)
        for _ in range(6):
            with torch.inference_mode():
                new = m.output_ids[m(enc, keep[:, :5].new_ones(1, 5), tokens, keep)[0].argmax(-1)][None]
            if torch.equal(new, tokens):
                break
            tokens = new
        with torch.inference_mode():
            logp = m(enc, keep.new_ones(1, 5), tokens, keep)[0].log_softmax(-1)
        mean = float(logp.gather(1, m.output_index[tokens[0]][:, None]).mean())
        best = max(best or (mean, []), (mean, tokens[0].tolist()))
    assert both.tokens == best[1] and both.mean_logprob == pytest.approx(best[0], abs=1e-5)
    sampled = [decode(m, src, steps=3, temperature=1.0, seed=s).tokens for s in (5, 5)]
    assert sampled[0] == sampled[1]


def test_length_prediction_is_within_range():
    m = model()
    src, src_keep, _, _ = batch()
    with torch.no_grad():
        logits = m.length_logits(m.encode(src, src_keep), src_keep)
    assert logits.shape == (2, 12)
    for seed in range(5):
        out = decode(m, [5, 6, 7], steps=1, lengths=3, seed=seed)
        assert 1 <= out.length <= 12 and len(out.tokens) == out.length
    with pytest.raises(ConfigError, match="max_target"):
        RumSundae(body(), max_target=100, special_ids=SPECIALS)


@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory):
    import re

    from transformers import BertTokenizerFast

    from experiments.corpora import load_corpus

    folder = tmp_path_factory.mktemp("tiny-mlm")
    pairs = load_corpus("bible-kjv-bbe", split="train").head(60)
    texts = [*pairs["source"], *pairs["target"]]
    words = sorted({w for text in texts for w in re.findall(r"\w+|[^\w\s]", text.lower())})
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])})
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=128, pad_token_id=0),
              add_pooling_layer=False).save_pretrained(folder)
    return folder


def test_lq_train_nar_end_to_end_resumes_and_loads(tiny_mlm, tmp_path):
    import json

    from transformers import AutoTokenizer

    from experiments import train_nar
    from experiments.config import load_config
    from experiments.corpora import load_corpus
    from models.nar import load

    def cfg(**kw):
        return load_config(train_nar.TrainNARConfig, "train_nar", overrides={
            "max_steps": 3, "warmup_steps": 1, "eval_every": 2, "eval_sentences": 3, "decode_steps": 2,
            "test_sentences": 3, "max_tokens": 400, "lr": 1e-3, "threads": 1} | kw)

    out = train_nar.main(cfg(), tmp_path / "nar", limit=40, mlm=tiny_mlm)
    record = json.loads((out / "nar.json").read_text())
    assert record["steps"] == 3 and record["test"]["n"] == 3 and record["special_ids"] == [0, 1, 2, 3, 4]
    pairs = load_corpus("bible-kjv-bbe", split="train").head(40)
    tok = AutoTokenizer.from_pretrained(tiny_mlm)
    texts = [*pairs["source"], *pairs["target"]]
    seen = {t for text in texts for t in tok(text, add_special_tokens=False)["input_ids"]}
    assert json.loads((out / "output_ids.json").read_text()) == sorted(seen - {0, 1, 2, 3, 4})
    assert "| test |" in (out / "README.md").read_text() and "lowercased" in (out / "README.md").read_text()
    train_nar.main(cfg(max_steps=5), tmp_path / "nar", limit=40, mlm=tiny_mlm)
    assert json.loads((out / "nar.json").read_text())["steps"] == 5
    model, tok = load(out)
    assert decode(model, tok("in the beginning")["input_ids"], steps=2).length >= 1
    random_init = train_nar.main(cfg(init="random", max_steps=1), tmp_path / "random", limit=40, mlm=tiny_mlm)
    assert "randomly initialised" in (random_init / "README.md").read_text()
    with pytest.raises(ConfigError, match="init must be"):
        cfg(init="bert")


@pytest.fixture(scope="module")
def nar_run_models(tiny_mlm, tmp_path_factory):
    """A tiny RUM-SUNDAE model and a tiny lowercased AR Marian model, each trained for two steps."""
    from experiments import cli, train_nar
    from experiments.config import load_config

    root = tmp_path_factory.mktemp("nar-run")
    cfg = load_config(train_nar.TrainNARConfig, "train_nar", overrides={
        "max_steps": 2, "warmup_steps": 1, "eval_every": 2, "eval_sentences": 2, "decode_steps": 1,
        "test_sentences": 2, "max_tokens": 400, "lr": 1e-3, "threads": 1})
    nar = train_nar.main(cfg, root / "nar-tiny", limit=40, mlm=tiny_mlm)
    ar = root / "ar-tiny"
    cli.main(["train", "mt", "--set", "corpus='bible-kjv-bbe'", "--set", "lowercase=true", "--set", "max_steps=2",
              "--set", "vocab_size=300", "--set", "d_model=32", "--set", "layers=1", "--set", "heads=2",
              "--set", "ffn_dim=64", "--set", "eval_every=2", "--set", "eval_sentences=2", "--set", "threads=1",
              "--limit", "100", "--out", str(ar)])
    return nar, ar


def test_lq_run_nar_compares_every_system_on_the_same_verses_and_resumes(nar_run_models, tmp_path):
    import json

    import pandas as pd

    from experiments import nar as experiment
    from models import ModelNotAvailableError

    nar, ar = nar_run_models
    cfg = experiment.NARRunConfig(models=[str(nar)], ar_model=str(ar), n=3, refine_steps=[0, 1, 3],
                                  length_candidates=2, n_boot=20, max_len=12)
    out = experiment.main(cfg, tmp_path / "run")
    df = pd.read_parquet(out / "rows.parquet")
    assert sorted(df["method"].unique()) == ["beam5", "copy", "greedy", "refine_T0", "refine_T1", "refine_T3"]
    assert df.groupby("method")["example_id"].apply(frozenset).nunique() == 1  # the same verses for all
    assert len(df[df["rank"] == 0]) == 6 * 3 and df["ar_logprob"].lt(0).all() and df["ar_tokens"].ge(1).all()
    refine = df[df["family"] == "refine"]
    assert (refine["steps_run"] <= refine["refine_steps"]).all() and refine["text"].str.islower().all()
    copy = df[df["method"] == "copy"]
    assert (copy["text"] == copy["source"].str.lower()).all()
    table = pd.read_csv(out / "summary.csv")
    assert {"bleu_lo", "chrf_hi", "ar_nll", "rep_consecutive", "length_error", "speedup_greedy"} <= set(table)
    greedy = table[table["method"] == "greedy"].iloc[0]
    assert greedy["speedup_greedy"] == pytest.approx(1.0)
    assert (out / "figures" / "nar_steps.png").is_file() and "| refine_T3 |" in (out / "report.md").read_text()
    training = json.loads((out / "training.json").read_text())
    assert training[str(nar)]["steps"] == 2 and training[str(ar)]["steps"] == 2
    rows_before = (out / "rows.jsonl").read_text()
    experiment.main(cfg, tmp_path / "run")
    assert (out / "rows.jsonl").read_text() == rows_before  # resumed: nothing run twice
    with pytest.raises(ModelNotAvailableError, match="lq train nar"):
        experiment.works(dataclasses.replace(cfg, models=[str(tmp_path / "missing")]), 1)
    with pytest.raises(ModelNotAvailableError, match="lowercase=true"):
        experiment.works(dataclasses.replace(cfg, ar_model="no-such-model"), 1)
