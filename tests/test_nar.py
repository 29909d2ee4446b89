"""RUM-SUNDAE (models/nar.py) on tiny BERT configs."""

import pytest
import torch
from transformers import BertConfig, BertModel

from models.errors import ConfigError
from models.nar import RumSundae, corrupt, decode, sundae_loss

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
    assert (a[..., list(SPECIALS)] == torch.finfo(a.dtype).min).all()


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
    generator = torch.Generator().manual_seed(3)
    allowed = torch.nonzero(~m.special).view(-1)
    initial = allowed[torch.randint(len(allowed), (1, zero.length), generator=generator)][0].tolist()
    assert zero.tokens == initial and zero.steps == 0
    a, b = decode(m, src, steps=4, lengths=2, seed=1), decode(m, src, steps=4, lengths=2, seed=1)
    assert (a.tokens, a.length, a.steps) == (b.tokens, b.length, b.steps) and 1 <= a.steps <= 4
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

    from experiments import train_nar
    from experiments.config import load_config
    from models.nar import load

    def cfg(**kw):
        return load_config(train_nar.TrainNARConfig, "train_nar", overrides={
            "max_steps": 3, "warmup_steps": 1, "eval_every": 2, "eval_sentences": 3, "decode_steps": 2,
            "test_sentences": 3, "max_tokens": 400, "lr": 1e-3, "threads": 1} | kw)

    out = train_nar.main(cfg(), tmp_path / "nar", limit=40, mlm=tiny_mlm)
    record = json.loads((out / "nar.json").read_text())
    assert record["steps"] == 3 and record["test"]["n"] == 3 and record["special_ids"] == [0, 1, 2, 3, 4]
    assert "| test |" in (out / "README.md").read_text() and "lowercased" in (out / "README.md").read_text()
    train_nar.main(cfg(max_steps=5), tmp_path / "nar", limit=40, mlm=tiny_mlm)
    assert json.loads((out / "nar.json").read_text())["steps"] == 5
    model, tok = load(out)
    assert decode(model, tok("in the beginning")["input_ids"], steps=2).length >= 1
    random_init = train_nar.main(cfg(init="random", max_steps=1), tmp_path / "random", limit=40, mlm=tiny_mlm)
    assert "randomly initialised" in (random_init / "README.md").read_text()
    with pytest.raises(ConfigError, match="init must be"):
        cfg(init="bert")
