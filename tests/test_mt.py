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
