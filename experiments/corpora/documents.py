"""Long documents of several domains, for the experiments that read whole texts (HSO's perplexity, recurrence).

Each domain's documents come whole from one split of its corpus (``load_corpus``'s document-level splits; Bible
chapters follow the chapter splits), so a model trained on a domain's training documents never sees a line of
its dev or test documents.
"""

from __future__ import annotations

DOMAINS = {
    "bible": "the King James Bible (1611; archaic English), one document per chapter",
    "shakespeare": "Shakespeare's plays and poems (modern spelling), one document per work",
    "wikipedia": "English Wikipedia articles (gensim's test data), one document per article",
    "news": "the Lee news corpus (Australian news articles, gensim's test data), one document per article",
}


def documents(domain: str, split: str, *, bible: str = "chapter") -> list[tuple[str, str]]:
    """(document id, text) of a domain's split, in corpus order. ``bible="book"``: one Bible document per book (the
    split's chapters of the book, in order) instead of one per chapter."""
    from experiments.corpora import load_corpus

    if domain == "bible":
        verses = load_corpus("bible-kjv-bbe", split=split)
        keys = ["book"] if bible == "book" else ["book", "chapter"]
        return [("bible/" + "/".join(str(k) for k in (key if isinstance(key, tuple) else (key,))),
                 " ".join(g["source"])) for key, g in verses.groupby(keys, sort=False)]
    corpus = {"shakespeare": "shakespeare", "wikipedia": "wikipedia", "news": "lee"}[domain]
    docs = load_corpus(corpus, split=split)
    return list(zip(docs["id"], docs["text"], strict=True))
