"""The demo experiment end to end on a tiny model folder, the CLI, and resuming an interrupted run."""

import json

import pytest
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from transformers import PreTrainedTokenizerFast

from experiments import cli, demo
from experiments.config import ConfigError, load_config
from tests.conftest import tiny_gpt2

WORDS = ["<eos>", "<unk>", "the", "cat", "sat", "on"]


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-gpt2")
    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", unk_token="<unk>").save_pretrained(path)
    tiny_gpt2(0).save_pretrained(path)
    return path


def config(model_dir, **kw):
    return load_config(demo.DemoConfig, "demo", overrides={
        "model": str(model_dir), "prompts": ["the cat", "cat sat on", "on the"], "max_len": 4,
        "max_seconds": 30.0, "beam_sizes": [1, 3]} | kw)


def read_rows(run):
    return [json.loads(line) for line in (run / "rows.jsonl").read_text().splitlines()]


def test_demo_runs_end_to_end_and_exact_is_best(tiny_model_dir, tmp_path):
    run = demo.main(config(tiny_model_dir), tmp_path / "run", limit=2)
    rows = read_rows(run)
    assert {r["example_id"] for r in rows} == {"0", "1"}
    assert (run / "rows.parquet").is_file() and "| exact |" in (run / "report.md").read_text()
    top = {(r["example_id"], r["method"]): r for r in rows if r["rank"] == 0}
    assert {m for _, m in top} == {"greedy", "beam1", "beam3", "exact", "exact_nonempty"}
    for i in ("0", "1"):
        exact = top[i, "exact"]
        assert exact["certified"] and 1 not in exact["token_ids"]  # unk is masked
        assert all(top[i, m]["logprob"] <= exact["logprob"] + 1e-6 for m in ("greedy", "beam1", "beam3"))
        assert top[i, "exact_nonempty"]["n_tokens"] >= 1
    assert len([r for r in rows if r["method"] == "beam3"]) == 6  # every finished hypothesis, ranked
    assert json.loads((run / "config.json").read_text())["config"]["model"] == str(tiny_model_dir)


def test_interrupted_run_resumes_without_losing_or_duplicating_rows(tiny_model_dir, tmp_path):
    cfg = config(tiny_model_dir)
    full = read_rows(demo.main(cfg, tmp_path / "full"))
    run = tmp_path / "cut"
    demo.main(cfg, run)
    lines = (run / "rows.jsonl").read_text().splitlines(keepends=True)
    # a kill in the middle of writing a beam unit: one of its rows written, the next one half written
    first_beam3 = next(i for i, line in enumerate(lines) if '"beam3"' in line)
    (run / "rows.jsonl").write_text("".join(lines[:first_beam3 + 1]) + lines[first_beam3 + 1][:20])
    resumed = read_rows(demo.main(cfg, run))
    key = lambda r: (r["example_id"], r["method"], r["rank"])  # noqa: E731
    assert sorted(map(key, resumed)) == sorted(map(key, full))
    assert len(set(map(key, resumed))) == len(resumed)


def test_resuming_with_another_config_is_refused(tiny_model_dir, tmp_path):
    demo.main(config(tiny_model_dir), tmp_path / "run", limit=1)
    with pytest.raises(ConfigError, match="different config"):
        demo.main(config(tiny_model_dir, max_len=3), tmp_path / "run", limit=1)


def test_cli_run_with_overrides(tiny_model_dir, tmp_path, capsys):
    cli.main(["run", "demo", "--set", f"model={tiny_model_dir}", "--set", "prompts=['the cat']", "--set",
              "max_len=3", "--set", "beam_sizes=[2]", "--out", str(tmp_path / "cli")])
    out = capsys.readouterr().out
    assert "exact_nonempty" in out and f"run directory: {tmp_path / 'cli'}" in out
    with pytest.raises(SystemExit, match="unknown config key"):
        cli.main(["run", "--set", "beam=3", "--out", str(tmp_path / "x")])


def test_unknown_model_gets_a_clear_error_not_a_traceback(tmp_path):
    with pytest.raises(SystemExit, match="lq: error: .*named model"):
        cli.main(["run", "--set", "model=no-such-model", "--out", str(tmp_path / "run")])
