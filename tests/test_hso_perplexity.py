"""`lq run hso-perplexity` end to end on a tiny model folder, resuming, and the perplexity table's statistics."""

import json

import numpy as np
import pandas as pd
import pytest

from analysis.perplexity import best_settings, perplexity_table
from experiments import hso_perplexity
from experiments.config import ConfigError, load_config
from tests.test_experiments import tiny_model_dir  # noqa: F401  (fixture)


def config(model_dir, **kw):
    return load_config(hso_perplexity.HSOPerplexityConfig, "hso-perplexity", overrides={
        "models": [str(model_dir)], "domains": ["bible", "wikipedia"], "test_tokens": 40, "dev_tokens": 19,
        "chunk_tokens": 20, "segment": 4, "window": 8, "hso_lr": [0.001, 0.01], "hso_steps": [1, 2],
        "dyn_lr": [1e-4]} | kw)


def test_runs_end_to_end_tunes_on_dev_and_resumes(tiny_model_dir, tmp_path):  # noqa: F811
    cfg = config(tiny_model_dir)
    run = hso_perplexity.main(cfg, tmp_path / "run")
    rows = [json.loads(line) for line in (run / "rows.jsonl").read_text().splitlines()]
    df = pd.DataFrame(rows)
    dev, test = df[df["phase"] == "dev"], df[df["phase"] == "test"]
    assert set(dev.groupby(["domain", "method", "lr", "steps"]).groups) == {
        (d, *s) for d in cfg.domains for s in [("none", 0.0, 0), ("hso", 0.001, 1), ("hso", 0.001, 2),
                                              ("hso", 0.01, 1), ("hso", 0.01, 2), ("dynamic_eval", 0.0001, 1)]}
    assert dev.groupby(["domain", "chunk", "method", "lr", "steps"])["tokens"].sum().eq(19).all()
    best = best_settings(dev.assign(model=dev["model"]))
    for domain, group in test.groupby("domain"):
        chosen = best[best["domain"] == domain]
        assert set(group.groupby(["method", "lr", "steps"]).groups) == set(
            zip(chosen["method"], chosen["lr"], chosen["steps"], strict=True))
        assert group.groupby(["method"])["tokens"].sum().eq(40).all()  # every method scores the same tokens
    summary = pd.read_csv(run / "summary.csv")
    assert set(summary["method"]) == {"none", "hso", "dynamic_eval"}
    assert (run / "figures" / "hso_perplexity.png").is_file() and (run / "figures" / "hso_steps.png").is_file()
    assert "| model | domain | method |" in (run / "report.md").read_text()
    before = (run / "rows.jsonl").read_text()
    hso_perplexity.main(cfg, tmp_path / "run")
    assert (run / "rows.jsonl").read_text() == before  # resuming a finished run adds nothing


def test_bad_config_is_refused(tiny_model_dir):  # noqa: F811
    with pytest.raises(ConfigError, match="domains"):
        config(tiny_model_dir, domains=["klingon"])
    with pytest.raises(ConfigError, match="chunk_tokens"):
        config(tiny_model_dir, chunk_tokens=4)


def test_model_test_tokens_gives_a_prefix_of_the_same_chunks(tiny_model_dir):  # noqa: F811
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    cfg = config(tiny_model_dir, model_test_tokens={str(tiny_model_dir): 25})
    full = hso_perplexity.chunks("bible", "test", tok, cfg)
    cut = hso_perplexity.chunks("bible", "test", tok, cfg, str(tiny_model_dir))
    assert sum(len(c.ids) - 1 for c in full) == 40 and sum(len(c.ids) - 1 for c in cut) == 25
    assert cut[:-1] == full[: len(cut) - 1] and full[len(cut) - 1].ids[: len(cut[-1].ids)] == cut[-1].ids
    with pytest.raises(ConfigError, match="model_test_tokens"):
        config(tiny_model_dir, model_test_tokens={str(tiny_model_dir): 1})


def test_perplexity_table_pairs_segments():
    rng = np.random.default_rng(0)
    n = 400
    base = rng.gamma(4.0, 8.0, n)
    rows = []
    for method, lr, steps, nll in [("none", 0.0, 0, base), ("hso", 0.01, 1, base - 2.0)]:
        rows += [{"model": "m", "domain": "d", "method": method, "lr": lr, "steps": steps, "chunk": f"c{i // 10}",
                  "segment": i % 10, "tokens": 32, "nll": v, "seconds": 1.0, "state_mb": 1.0}
                 for i, v in enumerate(nll)]
    table = perplexity_table(pd.DataFrame(rows)).set_index("method")
    assert table.loc["hso", "delta_logppl"] == pytest.approx(-2.0 / 32)
    # the shift is the same on every segment: a paired interval is (almost) a point, an unpaired one would not be
    assert table.loc["hso", "delta_hi"] - table.loc["hso", "delta_lo"] < 1e-9
    assert table.loc["hso", "segments_better"] == 1.0
    assert table.loc["none", "ppl_lo"] < table.loc["none", "ppl"] < table.loc["none", "ppl_hi"]
    assert table.loc["none", "ppl"] == pytest.approx(np.exp(base.sum() / (32 * n)))
