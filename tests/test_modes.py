"""The default experiment (`lq run modes`) end to end on a tiny Marian model with a real tokenizer and the real
Bible corpus: every method writes its rows, the run consolidates to parquet with metrics, report.md and figures are
written, `lq report` / `lq figures` re-render, and a killed run resumes without losing or duplicating rows."""

import pandas as pd
import pytest
import torch

from analysis.frames import COLUMNS, REQUIRED_COLUMNS, load_run, load_runs
from experiments import cli, modes
from experiments.config import load_config
from experiments.corpora import load_corpus
from models.mt import MTConfig, build_model, train_tokenizer


@pytest.fixture(scope="module")
def tiny_mt_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-marian")
    bible = load_corpus("bible-de-en", split="train", limit=300)
    tok = train_tokenizer(list(bible["source"]) + list(bible["target"]), 300)
    torch.manual_seed(0)
    cfg = MTConfig(d_model=16, layers=1, heads=2, ffn_dim=32, max_len=64)
    build_model(cfg, len(tok)).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def config(model_dir, **kw):
    return load_config(modes.ModesConfig, "modes", overrides={
        "model": str(model_dir), "n": 2, "max_source_tokens": 400, "beam_sizes": [1, 3], "max_len": 6,
        "max_nodes": 60, "length_offsets": [-1, 0, 1], "n_samples": 3} | kw)


def test_modes_runs_end_to_end(tiny_mt_dir, tmp_path):
    run = modes.main(config(tiny_mt_dir, n=20), tmp_path / "run", limit=2)
    df = load_run(run)
    declared = {c: t for c, (t, _) in COLUMNS.items() if c in df.columns and t != "object"}
    assert {c: str(df[c].dtype) for c in declared} == declared
    assert set(REQUIRED_COLUMNS) <= set(df.columns)
    assert df.groupby("method")["family"].first().to_dict() == {
        "greedy": "greedy", "beam1": "beam", "beam3": "beam", "exact": "exact", "exact_nonempty": "exact_nonempty",
        "length_conditional": "length_conditional", "sample": "sample"}
    assert df.loc[df["family"] == "beam", "beam_size"].isin([1, 3]).all()
    assert {"bleu", "chrf", "empty", "degenerate", "search_error", "logprob_rank"} <= set(df.columns)
    assert set(df["method"]) == {"greedy", "beam1", "beam3", "exact", "exact_nonempty", "length_conditional",
                                 "sample"}
    assert df["example_id"].nunique() == 2
    top = df[df["rank"] == 0].set_index(["example_id", "method"])
    assert len(top) == 2 * 7
    for ex in df["example_id"].unique():
        exact = top.loc[(ex, "exact")]
        if exact["certified"]:
            others = top.loc[ex]["logprob"].drop(["length_conditional", "sample"])
            assert (others <= exact["logprob"] + 1e-4).all()
        nonempty = top.loc[(ex, "exact_nonempty")]
        assert nonempty["n_tokens"] >= 1
    lengths = df[df["method"] == "length_conditional"]
    assert (lengths["n_tokens"].dropna() == lengths["target_length"][lengths["n_tokens"].notna()]).all()
    assert (df[df["method"] == "sample"].groupby("example_id").size() == 3).all()
    report = (run / "report.md").read_text()
    assert "| exact |" in report and "BLEU" in report
    assert list((run / "figures").glob("*.pdf"))


def test_report_and_figures_commands_rerender(tiny_mt_dir, tmp_path, capsys):
    run = modes.main(config(tiny_mt_dir, n=1), tmp_path / "run")
    (run / "report.md").unlink()
    cli.main(["report", str(run)])
    assert (run / "report.md").is_file()
    assert "| greedy |" in capsys.readouterr().out
    cli.main(["figures", str(run)])
    assert list((run / "figures").glob("*.png"))
    with pytest.raises(SystemExit, match="not a run directory"):
        cli.main(["report", str(tmp_path)])


def test_killed_run_resumes_without_lost_or_duplicated_rows(tiny_mt_dir, tmp_path):
    cfg = config(tiny_mt_dir)
    full = load_run(modes.main(cfg, tmp_path / "full"))
    run = tmp_path / "killed"
    modes.main(cfg, run)
    lines = (run / "rows.jsonl").read_text().splitlines(keepends=True)
    cut = len(lines) // 2
    (run / "rows.jsonl").write_text("".join(lines[:cut]) + lines[cut][:25])
    (run / "rows.parquet").unlink()
    resumed = load_run(modes.main(cfg, run))
    key = ["example_id", "method", "rank"]
    assert not resumed.duplicated(key).any()
    cols = [*key, "text", "logprob"]
    pd.testing.assert_frame_equal(resumed[cols].sort_values(key).reset_index(drop=True),
                                  full[cols].sort_values(key).reset_index(drop=True))
    both = load_runs([tmp_path / "full", run])
    assert len(both) == 2 * len(full) and both["cfg_n"].eq(2).all()
