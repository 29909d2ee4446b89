"""The conditional experiment (`lq run conditional`, `lq train classifier`) end to end on a tiny Marian model with
real Bible verses and a tiny chat model with a ChatML template and real chatterbot prompts; and chat prompts
round-tripping to the user's message."""

import pandas as pd
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from analysis.frames import load_run
from decoding import NotDegenerate
from experiments import cli, conditional
from experiments.config import load_config
from experiments.corpora import load_corpus
from experiments.report import CALIBRATION
from models.chat import prompt_ids, user_message
from tests.test_modes import tiny_mt_dir  # noqa: F401  (a fixture)

CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def chat_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (it round-trips any text) trained on chatterbot prompts, with a ChatML template."""
    texts = list(load_corpus("chatterbot")["source"]) + list(load_corpus("chatterbot")["target"])
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", bos_token="<|endoftext|>")
    tok.chat_template = CHATML
    return tok


@pytest.fixture(scope="module")
def tiny_chat_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-chat")
    tok = chat_tokenizer()
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=256, n_embd=16, n_layer=1, n_head=2,
                               bos_token_id=eos, eos_token_id=eos)).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.mark.parametrize("message", ["What is AI?", "  two  spaces\nand a line ", "ümlaut – dash"])
def test_user_message_inverts_prompt_ids(message):
    tok = chat_tokenizer()
    ids = prompt_ids(tok, message)
    assert tok.decode(ids).startswith("<|im_start|>user\n")
    assert user_message(tok)(ids) == message
    plain = tok(message)["input_ids"]
    assert user_message(tok)(plain) == tok.decode(plain, skip_special_tokens=True)


def test_not_degenerate_checks_copies_against_the_user_message():
    tok = chat_tokenizer()
    source = tuple(prompt_ids(tok, "What is a computer?"))
    copy = tuple(tok("What is a computer?", add_special_tokens=False)["input_ids"])
    answer = tuple(tok("A machine that computes.", add_special_tokens=False)["input_ids"])
    attribute = NotDegenerate(detokenize=lambda ids: tok.decode(ids, skip_special_tokens=True),
                              source_text=user_message(tok))
    assert not attribute(copy, source) and attribute(answer, source)
    # against the whole template the copy is not near enough to count
    assert NotDegenerate(detokenize=lambda ids: tok.decode(ids, skip_special_tokens=True))(copy, source)


def config(mt_dir, chat_dir, **kw):
    return load_config(conditional.ConditionalConfig, "conditional", overrides={
        "models": [str(mt_dir), str(chat_dir)], "n": 2, "chat_n": 2, "max_source_tokens": 400, "max_len": 6,
        "chat_max_len": 6, "chat_min_tokens": 1, "length_ratio": [0.05, 1.0], "beam_sizes": [2],
        "chat_beam_sizes": [2], "candidates": 8, "max_seconds": 2.0, "train_sources": 6, "chat_train_sources": 6,
        "train_samples": 3, "epochs": 2} | kw)


def test_conditional_runs_end_to_end_and_resumes(tiny_mt_dir, tiny_chat_dir, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("LQ_CACHE", str(tmp_path / "cache"))
    cfg = config(tiny_mt_dir, tiny_chat_dir)
    run = conditional.main(cfg, tmp_path / "run", limit=2)
    df = load_run(run)
    families = {"beam", "beam_nonempty", "beam_min_len", "beam_truncated", "beam_filtered", "conditional_beam",
                "exact", "exact_conditional"}
    assert [set(f) for _, f in df.groupby("model")["family"]] == [families, families]
    assert df.groupby(["model", "example_id", "method"]).size().eq(1).all() and df["example_id"].nunique() == 4
    assert set(df["method"]) >= {"beam2", "conditional_beam2", "beam_filtered2", "exact_conditional"}
    with_a = df[df["family"].isin(["beam_filtered", "conditional_beam", "exact_conditional"])]
    assert with_a["attribute_holds"].dropna().all()
    cond = df[df["family"] == "conditional_beam"]
    assert (cond["classifier_calls"] > 0).all() and (cond["classifier_rows"] >= cond["classifier_calls"]).all()
    assert df[df["family"] == "beam_nonempty"]["n_tokens"].dropna().ge(1).all()
    chat = df[df["model"] == str(tiny_chat_dir)]
    assert chat["reference"].isna().all() and set(chat["source"]) <= set(load_corpus("chatterbot")["source"])
    calibration = pd.read_parquet(run / CALIBRATION)
    assert set(calibration["model"]) == {str(tiny_mt_dir), str(tiny_chat_dir)}
    assert set(calibration["table"]) == {"reliability", "by_position"} and calibration["ece"].between(0, 1).all()
    assert (run / "report.md").is_file()
    again = conditional.main(cfg, tmp_path / "run", limit=2)
    assert len(load_run(again)) == len(df)


def test_train_classifier_command_reports_held_out_metrics(tiny_mt_dir, tmp_path, monkeypatch, capsys):  # noqa: F811
    monkeypatch.setenv("LQ_CACHE", str(tmp_path / "cache"))
    sets = [f"models=['{tiny_mt_dir}']", "train_sources=6", "train_samples=3", "epochs=2", "max_len=6",
            "max_source_tokens=400"]
    cli.main(["train", "classifier", *[arg for s in sets for arg in ("--set", s)], "--limit", "2"])
    out = capsys.readouterr().out
    assert "held-out loss" in out and "ECE" in out
    folder = next((tmp_path / "cache" / "classifiers").rglob("head.safetensors")).parent
    assert (folder / "reliability.csv").is_file() and (folder / "settings.json").is_file()
    with pytest.raises(SystemExit, match="--out is for mt"):
        cli.main(["train", "classifier", "--out", str(tmp_path)])
