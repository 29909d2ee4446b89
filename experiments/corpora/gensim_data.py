"""The ``wikipedia`` and ``lee`` corpora: documents from the test data shipped inside ``gensim==4.4.0``.

The ``gensim/test/test_data`` folder is found without importing gensim; the Wikipedia markup filter imports gensim
once, and the parsed frame is cached as a pickle under ``$LQ_CACHE/corpora``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from experiments.corpora.common import (
    LOADER_VERSION,
    CorpusNotAvailableError,
    _cached,
    _documents,
    _installed_version,
    _normalise_text,
    _package_path,
)

__all__ = ["GENSIM", "WIKI_FILE", "load_lee", "load_wikipedia"]

GENSIM = "gensim==4.4.0"


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
