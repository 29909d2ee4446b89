"""Few-shot translation prompts for decoder-only models, with demonstrations drawn from a parallel corpus."""

from __future__ import annotations

import pandas as pd

from experiments.corpora.common import _stable_int

__all__ = ["few_shot_examples", "few_shot_prompt"]


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
