"""Training the Marian translation model: a tiny run produces a loadable HF folder; contamination is exact."""

import json
import random

import pandas as pd
import pytest
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from decoding import exact_search
from decoding.hf import HFSeq2SeqLM
from models.errors import ConfigError
from models.mt import MTConfig, contaminate, train

DE = ["null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun"]
EN = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def number_pairs(n: int, seed: int) -> pd.DataFrame:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        digits = [rng.randrange(10) for _ in range(rng.randint(1, 5))]
        rows.append({"id": f"num/{seed}/{i}", "source": " ".join(DE[d] for d in digits),
                     "target": " ".join(EN[d] for d in digits)})
    return pd.DataFrame(rows)


TINY = MTConfig(vocab_size=60, d_model=32, layers=1, heads=2, ffn_dim=64, max_tokens=400, warmup_steps=20,
                lr=3e-3, max_steps=40, max_minutes=5, max_epochs=6, eval_every=25, eval_sentences=20, threads=1)


@pytest.mark.parametrize("kind", ["empty", "copy"])
def test_contamination_rate_is_exact(kind):
    df = number_pairs(500, 0)
    out = contaminate(df, 0.05, kind, seed=1)
    hit = out[out["contaminated"]]
    assert len(hit) == 25
    assert (hit["target"] == ("" if kind == "empty" else hit["source"])).all()
    assert (out.loc[~out["contaminated"], "target"] == df.loc[~out["contaminated"], "target"]).all()
    assert contaminate(df, 0.05, kind, seed=1)["contaminated"].equals(out["contaminated"])


def test_tiny_training_run_gives_a_loadable_model_and_resumes(tmp_path):
    out = train(number_pairs(300, 0), number_pairs(30, 1), tmp_path / "mt", TINY, command="pytest")
    meta = json.loads((out / "training.json").read_text())
    assert meta["steps"] > 0 and meta["command"] == "pytest" and meta["n_train"] == 300
    curve = pd.read_csv(out / "learning_curve.csv")
    assert {"step", "train_loss", "dev_loss", "dev_bleu", "dev_chrf"} <= set(curve.columns)
    model = AutoModelForSeq2SeqLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    lm = HFSeq2SeqLM(model.float(), tok)
    assert lm.eos_id == tok.eos_token_id and tok.pad_token_id in lm.masked_ids
    source = tok("eins zwei")["input_ids"]
    assert source[-1] == tok.eos_token_id
    res = exact_search(lm, source, max_len=6, max_seconds=30)
    assert res.best is not None
    again = train(number_pairs(300, 0), number_pairs(30, 1), tmp_path / "mt", TINY, command="pytest")
    assert json.loads((again / "training.json").read_text())["steps"] == meta["steps"] == 40
    longer = MTConfig(**{**TINY.__dict__, "max_steps": 45})  # a budget may grow on resume
    assert json.loads((train(number_pairs(300, 0), number_pairs(30, 1), tmp_path / "mt", longer)
                       / "training.json").read_text())["steps"] == 45


def test_resuming_with_other_data_is_refused(tmp_path):
    cfg = MTConfig(**{**TINY.__dict__, "max_steps": 3})
    train(number_pairs(100, 0), number_pairs(10, 1), tmp_path / "mt", cfg)
    with pytest.raises(ConfigError, match="different config or data"):
        train(number_pairs(100, 5), number_pairs(10, 1), tmp_path / "mt", cfg)


def test_init_from_continues_a_trained_model_on_contaminated_data(tmp_path):
    base = train(number_pairs(100, 0), number_pairs(10, 1), tmp_path / "base",
                 MTConfig(**{**TINY.__dict__, "max_steps": 5}))
    cfg = MTConfig(**{**TINY.__dict__, "max_steps": 3, "init_from": str(base), "contamination": 0.1})
    tuned = train(number_pairs(100, 0), number_pairs(10, 1), tmp_path / "tuned", cfg)
    meta = json.loads((tuned / "training.json").read_text())
    assert meta["steps"] == 3 and meta["n_contaminated"] == 10 and meta["config"]["init_from"] == str(base)
    assert AutoTokenizer.from_pretrained(tuned).get_vocab() == AutoTokenizer.from_pretrained(base).get_vocab()
    base_w = AutoModelForSeq2SeqLM.from_pretrained(base).model.shared.weight
    tuned_w = AutoModelForSeq2SeqLM.from_pretrained(tuned).model.shared.weight
    assert base_w.shape == tuned_w.shape and 0 < (base_w - tuned_w).abs().max() < 0.1


def test_the_decoder_only_loss_counts_target_tokens_only():
    import torch

    from models.mt import _loss, build_model

    torch.manual_seed(0)
    cfg = MTConfig(**{**TINY.__dict__, "arch": "decoder-only"})
    model = build_model(cfg, 60).eval()
    src, tgt = [[5, 6, 7, 1], [8, 1]], [[9, 10, 1], [11, 12, 13, 1]]
    logits = model(input_ids=torch.tensor([[5, 6, 7, 1, 9, 10, 1]])).logits[0]
    by_hand = torch.nn.functional.cross_entropy(logits[3:6], torch.tensor([9, 10, 1]), reduction="sum")
    logits = model(input_ids=torch.tensor([[8, 1, 11, 12, 13, 1]])).logits[0]
    by_hand += torch.nn.functional.cross_entropy(logits[1:5], torch.tensor([11, 12, 13, 1]), reduction="sum")
    torch.testing.assert_close(_loss(model, "decoder-only", src, tgt), by_hand / 7, atol=1e-5, rtol=1e-5)
    # another source changes the loss only through the context: the source tokens themselves are never targets
    assert _loss(model, "decoder-only", [[5, 1], [8, 1]], tgt) != _loss(model, "decoder-only", src, tgt)
    with pytest.raises(ValueError, match="arch must be one of marian, decoder-only"):
        MTConfig(arch="gpt")


def test_a_tiny_decoder_only_run_loads_as_a_causal_translation_model_with_exact_search(tmp_path):
    from decoding.hf import HFCausalLM
    from experiments.loop import load_translation_lm
    from tests.conftest import brute_mode

    cfg = MTConfig(**{**TINY.__dict__, "arch": "decoder-only", "max_steps": 30})
    out = train(number_pairs(300, 0), number_pairs(30, 1), tmp_path / "dec", cfg, command="pytest")
    lm, tok, info, prompt = load_translation_lm(str(out), shots=4)
    assert isinstance(lm, HFCausalLM) and not info.is_encoder_decoder
    assert lm.eos_id == tok.eos_token_id == 1 and prompt("eins zwei", None) == "eins zwei"
    assert sum(p.numel() for p in lm.model.parameters()) == info.n_parameters
    source = tok(prompt("eins zwei", None))["input_ids"]
    assert source[-1] == tok.eos_token_id  # the separator
    mode, lp = brute_mode(lm, source, 2)
    res = exact_search(lm, source, max_len=2)
    assert res.certified and res.best.token_ids == mode and res.best.logprob == pytest.approx(lp, abs=1e-5)


def test_lq_train_mt_decoder_only_writes_its_card(tmp_path):
    from experiments import cli

    out = tmp_path / "card"
    cli.main(["train", "mt", "--set", "arch='decoder-only'", "--set", "max_steps=3", "--set", "vocab_size=300",
              "--set", "d_model=32", "--set", "layers=1", "--set", "heads=2", "--set", "ffn_dim=64",
              "--set", "eval_every=3", "--set", "eval_sentences=5", "--set", "threads=1", "--limit", "200",
              "--out", str(out)])
    card = (out / "README.md").read_text()
    assert card.startswith("# bible-de-en-decoder-only") and "decoder-only `LlamaForCausalLM`" in card
    assert "| test/beam5 |" in card and "target tokens" in card
    meta = json.loads((out / "training.json").read_text())
    assert meta["steps"] == 3 and meta["target_tokens"] > 0
    assert json.loads((out / "config.json").read_text())["lq_input_format"] == "source </s> target </s>"


def test_multi_task_minibatches_mix_tasks_and_are_scored_per_task(tmp_path):
    from experiments import cli
    from experiments.corpora import load_corpus
    from experiments.loop import load_translation_lm
    from models.training import EpochBatches

    both = pd.concat([load_corpus("bible-de-en", split="train").head(400).assign(task="de-en"),
                      load_corpus("bible-kjv-bbe", split="train").head(400).assign(task="kjv-bbe")],
                     ignore_index=True)
    lengths = [len(s.split()) + len(t.split()) for s, t in zip(both["source"], both["target"], strict=True)]
    batches = EpochBatches(lengths, 600, 0).of_epoch(0)
    mixed = [len(set(both["task"].iloc[b])) > 1 for b in batches if len(b) >= 8]
    assert mixed and sum(mixed) / len(mixed) > 0.9
    out = tmp_path / "multi"
    cli.main(["train", "mt", "--set", "tasks=['bible-de-en', 'bible-kjv-bbe']", "--set", "max_steps=3",
              "--set", "vocab_size=300", "--set", "d_model=32", "--set", "layers=1", "--set", "heads=2",
              "--set", "ffn_dim=64", "--set", "eval_every=3", "--set", "eval_sentences=5", "--set", "threads=1",
              "--limit", "100", "--out", str(out)])
    scores = json.loads((out / "training.json").read_text())["evaluation"]
    assert {"dev/bible-de-en/greedy", "test/bible-kjv-bbe/beam5"} <= set(scores)
    assert scores["test/bible-kjv-bbe/beam5"]["n"] == 10
    assert "`bible-kjv-bbe` ('simplify: ')" in (out / "README.md").read_text()
    _, _, _, prompt = load_translation_lm(str(out), shots=0, corpus="bible-kjv-bbe")
    assert prompt("In the beginning", None) == "simplify: In the beginning"
    with pytest.raises(ConfigError, match="multi-task model of bible-de-en, bible-kjv-bbe; it has no task for lee"):
        load_translation_lm(str(out), shots=0, corpus="lee")
    with pytest.raises(SystemExit, match="tasks must be two or more of"):
        cli.main(["train", "mt", "--set", "tasks=['bible-de-en']"])


def test_a_lowercased_model_is_trained_on_and_given_lowercased_text(tmp_path):
    from experiments import cli
    from experiments.loop import load_translation_lm

    out = tmp_path / "lc"
    cli.main(["train", "mt", "--set", "corpus='bible-kjv-bbe'", "--set", "lowercase=true", "--set", "max_steps=2",
              "--set", "vocab_size=300", "--set", "d_model=32", "--set", "layers=1", "--set", "heads=2",
              "--set", "ffn_dim=64", "--set", "eval_every=2", "--set", "eval_sentences=5", "--set", "threads=1",
              "--limit", "100", "--out", str(out)])
    assert "lowercased" in (out / "README.md").read_text()
    _, tok, _, prompt = load_translation_lm(str(out), shots=0, corpus="bible-kjv-bbe")
    assert prompt("In the Beginning", None) == "in the beginning"
    vocab = "".join(tok.convert_ids_to_tokens(list(range(len(tok)))))
    assert not any(c.isupper() for c in vocab)


def test_a_target_token_budget_stops_training(tmp_path):
    cfg = MTConfig(**{**TINY.__dict__, "max_target_tokens": 300})
    out = train(number_pairs(300, 0), number_pairs(30, 1), tmp_path / "budget", cfg, command="pytest")
    meta = json.loads((out / "training.json").read_text())
    assert 300 <= meta["target_tokens"] < 300 + 400 and meta["steps"] < TINY.max_steps
