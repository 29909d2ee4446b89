"""The ``chatterbot`` corpus: user prompts and a chatbot's answers from ``chatterbot-corpus==1.3.3``.

Install with ``pip install --no-deps chatterbot-corpus==1.3.3`` (never imported here):
``chatterbot_corpus/data/<language>/<category>.yml``, YAML files with ``categories`` and ``conversations``, each
conversation a list of statements that alternate between user and bot.
"""

from __future__ import annotations

import logging

import pandas as pd
import yaml

from experiments.corpora.common import (
    CorpusNotAvailableError,
    _document_splits,
    _normalise_text,
    _pinned_package_path,
)

__all__ = ["CHATTERBOT", "PROMPT_HELD_OUT_FRACTION", "load_chatterbot"]

log = logging.getLogger(__name__)

CHATTERBOT = "chatterbot-corpus==1.3.3"

# Twice the documents' fraction: 5 % of the 748 distinct English prompts would leave 37 for test.
PROMPT_HELD_OUT_FRACTION = 0.10


def _statements(conversation: object) -> tuple[str, ...] | None:
    """A conversation's statements, normalised as ``load_chatterbot`` says; None unless >= 2 strings."""
    if not isinstance(conversation, list) or len(conversation) < 2:
        return None
    if not all(isinstance(s, str) for s in conversation):
        return None
    prompt, *replies = conversation
    return (" ".join(prompt.split()), *(_normalise_text(r).strip() for r in replies))


def load_chatterbot(*, language: str = "english") -> pd.DataFrame:
    """User prompts and a chatbot's answers from ``chatterbot-corpus==1.3.3``: one row per conversation.

    ``language`` is a folder of ``chatterbot_corpus/data`` (``"english"``, ``"german"``, ``"chinese"``, ...).
    Each ``<category>.yml`` lists conversations, statements that alternate between user and bot. Columns:
    ``id`` (``"chatterbot/english/ai/0"``: the file's stem, then the conversation's position in the file),
    ``category`` (the file's stem), ``split``, ``source`` (the first statement, the user's prompt),
    ``target`` (the second, the bot's answer), ``turns`` (the number of statements; beyond two the
    dialogue goes on, and the later statements are not kept). The prompt's whitespace is collapsed to
    single spaces; the other statements keep their lines (``coding`` answers hold indented code) with
    newlines normalised, trailing spaces removed and the edges stripped. Rows are in file order, files by
    name. A prompt often opens several conversations with different answers (several references); they
    share a split, which is drawn per prompt (case-folded): ``PROMPT_HELD_OUT_FRACTION`` of the distinct
    prompts go to test and as many to dev.

    Dropped and counted in ``df.attrs["dropped"]`` (``conversations``, ``malformed``, ``empty``,
    ``duplicates``, ``dropped``, ``ids`` in file order): malformed conversations (not a list of at least
    two strings; in 1.3.3 these are YAML indentation slips that fold a conversation into one string: 1 in
    English, 9 in Ukrainian), those with an empty prompt or answer, and exact repeats of an earlier
    conversation (1,127 of the 2,026 English ones; ``tech_support`` repeats 10 conversations 1,050 times).
    English keeps 898 conversations with 748 distinct prompts, 75 of them in test.
    """
    folder = _pinned_package_path("chatterbot_corpus", "data", CHATTERBOT, "the chatterbot loaders")
    languages = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if language not in languages:
        raise ValueError(f"unknown chatterbot language {language!r}; languages: {', '.join(languages)}")
    rows: list[tuple[str, str, str, str, int]] = []
    seen: set[tuple[str, ...]] = set()
    counts = dict.fromkeys(("malformed", "empty", "duplicates"), 0)
    ids: list[str] = []
    total = 0
    for path in sorted((folder / language).glob("*.yml")):
        with path.open(encoding="utf-8") as f:
            doc = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        conversations = doc.get("conversations") if isinstance(doc, dict) else None
        if not isinstance(conversations, list):
            raise CorpusNotAvailableError(f"{path} has no list of conversations; reinstall it with: "
                                          f"pip install --no-deps --force-reinstall {CHATTERBOT}")
        total += len(conversations)
        for index, conversation in enumerate(conversations):
            ident = f"chatterbot/{language}/{path.stem}/{index}"
            statements = _statements(conversation)
            if statements is None:
                reason = "malformed"
            elif not (statements[0] and statements[1]):
                reason = "empty"
            elif statements in seen:
                reason = "duplicates"
            else:
                seen.add(statements)
                rows.append((ident, path.stem, statements[0], statements[1], len(statements)))
                continue
            counts[reason] += 1
            ids.append(ident)
    df = pd.DataFrame(rows, columns=["id", "category", "source", "target", "turns"])
    df.insert(2, "split", _document_splits([s.casefold() for s in df["source"]], PROMPT_HELD_OUT_FRACTION))
    df.attrs.update({
        "corpus": "chatterbot",
        "language": language,
        "dropped": {"conversations": total, **counts, "dropped": len(ids), "ids": ids},
    })
    log.info("chatterbot/%s: %d conversations, %d malformed, %d empty, %d duplicates dropped", language, total,
             counts["malformed"], counts["empty"], counts["duplicates"])
    return df
