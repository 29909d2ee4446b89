"""The contamination experiment: its analysis against hand-computed cases, and the experiment end to end on a tiny
Marian model trained (and fine-tuned) on real Bible verses."""

import math

import pandas as pd
import pytest

from analysis.contamination import mode_rates, quality_by_setting
from analysis.frames import load_run
from experiments import contamination
from experiments.config import load_config
from experiments.corpora import load_corpus
from figures import FIGURES
from models.mt import MTConfig, train


def row(noise, eps, ex, method, n_tokens, logprob, *, certified=True, copy=False, p_empty=0.01, p_copy=0.001):
    return {"noise": noise, "epsilon": eps, "example_id": ex, "method": method, "rank": 0, "certified": certified,
            "n_tokens": n_tokens, "logprob": logprob, "copy_exact": copy, "empty_logprob": math.log(p_empty),
            "copy_logprob": math.log(p_copy)}


def test_mode_rates_measure_certified_modes_and_predict_from_the_control():
    # control: best non-degenerate probabilities 0.2 and 0.02; P0(empty) = 0.01 for both sources
    rows = [row("none", 0.0, "a", "exact_nondegenerate", 3, math.log(0.2)),
            row("none", 0.0, "b", "exact_nondegenerate", 3, math.log(0.02)),
            row("none", 0.0, "a", "exact", 3, math.log(0.2)), row("none", 0.0, "b", "exact", 3, math.log(0.02)),
            row("empty", 0.05, "a", "exact", 3, math.log(0.19), p_empty=0.05),
            row("empty", 0.05, "b", "exact", 0, math.log(0.06), p_empty=0.05),
            row("empty", 0.05, "c", "exact", 0, math.log(0.5), certified=False, p_empty=0.05)]
    rates = mode_rates(pd.DataFrame(rows)).set_index(["noise", "epsilon", "degenerate_output"])
    control = rates.loc[("none", 0.0, "empty")]
    assert (control["rate"], control["n"], control["predicted"]) == (0.0, 2, 0.0)
    noisy = rates.loc[("empty", 0.05, "empty")]
    # eps + (1 - eps) 0.01 = 0.0595 beats (1 - eps) 0.02 = 0.019 but not (1 - eps) 0.2 = 0.19; so does the learned
    # P(empty) = 0.05; copy noise is absent, so the copy prediction uses eps = 0
    assert (noisy["rate"], noisy["k"], noisy["n"], noisy["uncertified"]) == (0.5, 1, 2, 1)
    assert (noisy["predicted"], noisy["predicted_learned"]) == (0.5, 0.5)
    assert noisy["mean_p"] == pytest.approx(0.05)
    copy = rates.loc[("empty", 0.05, "copy")]
    assert (copy["rate"], copy["predicted"], copy["predicted_learned"]) == (0.0, 0.0, 0.0)


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    bible = load_corpus("bible-de-en")
    cfg = MTConfig(vocab_size=300, d_model=16, layers=1, heads=2, ffn_dim=32, max_tokens=600, warmup_steps=2,
                   max_steps=3, eval_every=3, eval_sentences=4, threads=1, max_len=64)
    return train(bible[bible["split"] == "train"].head(200), bible[bible["split"] == "dev"].head(4),
                 tmp_path_factory.mktemp("base"), cfg)


def test_contamination_runs_end_to_end(tiny_base, tmp_path, monkeypatch):
    monkeypatch.setenv("LQ_CACHE", str(tmp_path / "cache"))
    cfg = load_config(contamination.ContaminationConfig, "contamination", overrides={
        "base_model": str(tiny_base), "kinds": ["empty", "copy"], "epsilons": [0.0, 0.05], "steps": 2, "n": 2,
        "max_source_tokens": 400, "max_len": 4, "max_seconds": 5.0, "toy": False, "beam_size": 2})
    run = contamination.main(cfg, tmp_path / "run", limit=2)
    df = load_run(run)
    assert set(zip(df["noise"], df["epsilon"], strict=True)) == {("none", 0.0), ("empty", 0.05), ("copy", 0.05)}
    assert len(df) == 3 * 2 * 3 and set(df["method"]) == {"beam2", "exact", "exact_nondegenerate"}
    nondegenerate = df[df["method"] == "exact_nondegenerate"]
    assert (nondegenerate["n_tokens"] >= 1).all() and not nondegenerate["copy_exact"].any()
    assert quality_by_setting(df)["perplexity"].gt(1).all()
    assert len(mode_rates(df)) <= 3 * 2
    for name in ("contamination", "contamination_length"):
        reason = FIGURES[name].REQUIRES.missing(df)
        assert reason is None or "certified" in reason or "source lengths" in reason
    assert (run / "report.md").is_file()
    again = contamination.main(cfg, tmp_path / "run", limit=2)  # resumes: nothing left to do, no duplicates
    assert len(load_run(again)) == len(df)
