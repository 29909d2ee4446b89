"""What every experiment shares (DESIGN.md §6): examples, methods as data, and one resumable search loop.

An experiment builds its ``Example``\\ s (``translation_examples``, ``chat_examples``), declares its ``Method``\\ s
(a family of ``analysis.methods`` with typed settings, and the search that runs it on one example), and hands both
to ``search_all``, which runs every (example, method) unit its run directory does not hold yet, with a progress bar
and ETA, turning each search's outputs into rows with ``analysis.frames.result_rows``.

``execute`` runs one model's ``Work`` (its loaded model, examples and methods) the same way, or, given
``RayOptions``, on Ray (``experiments.distributed``): there each worker builds the work itself from the experiment's
*recipe*, a picklable ``Callable[[], Work]`` (a module-level function of the experiment and its config), because a
method's search is a closure over a loaded model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from analysis import methods
from analysis.frames import Found, result_rows
from decoding import Hypothesis, SearchResult
from experiments.config import ConfigError
from experiments.rundir import RunDir

if TYPE_CHECKING:
    from experiments.distributed import RayOptions

__all__ = ["Example", "Found", "Method", "Sources", "Work", "chat_examples", "execute", "load_translation_lm",
           "pending", "search_all", "translation_examples"]


@dataclass(frozen=True)
class Example:
    """One source as a model sees it: ``source_ids`` is what the model is given (a prompt around the source for a
    decoder-only model), ``source_tokens`` the source's own length, ``max_len`` the output limit of every search."""

    example_id: str
    source: str
    reference: str | None
    source_ids: list[int]
    source_tokens: int
    reference_tokens: int | None
    max_len: int

    def columns(self) -> dict[str, Any]:
        """The example's columns of a result row."""
        return {k: v for k, v in asdict(self).items() if k != "source_ids"}


Search = Callable[[Example], SearchResult | Sequence[Found]]


@dataclass(frozen=True)
class Method:
    """A family of ``analysis.methods.FAMILIES`` with its settings (columns of ``analysis.methods.SETTINGS``,
    recorded in every row) and the search of one example. A search returns a ``SearchResult`` (one row per
    hypothesis, at most ``keep`` of them; one row without output when it found none) or its rows' ``Found``\\ s."""

    family: str
    settings: Mapping[str, Any]
    search: Search = field(compare=False)
    keep: int | None = None

    @property
    def name(self) -> str:
        return methods.label(self.family, self.settings)

    def run(self, ex: Example) -> list[Found]:
        out = self.search(ex)
        if not isinstance(out, SearchResult):
            return list(out)
        hypotheses: list[Hypothesis | None] = [*out.hypotheses[:self.keep]] or [None]
        return [Found(h, out, {}) for h in hypotheses]


@dataclass(frozen=True)
class Sources:
    """Which sources of a parallel corpus an experiment translates and how long its outputs may be: ``max_len`` of
    a source is ``ceil(max_len_ratio * source tokens) + 5``, capped at ``max_len``."""

    corpus: str
    split: str
    n: int
    max_source_tokens: int
    max_len_ratio: float
    max_len: int


def translation_examples(sources: Sources, tok: Any, prompt: Callable[[str, Any], str],
                         limit: int | None) -> list[Example]:
    """The first ``n`` (or ``limit``) sources of the split, in corpus order, with 1..max_source_tokens tokens;
    ``prompt(source, training pairs)`` is the text the model is given."""
    from experiments.corpora import load_corpus

    corpus = load_corpus(sources.corpus)
    demos = corpus[corpus["split"] == "train"]
    rows = corpus[corpus["split"] == sources.split]
    if rows.empty:
        raise ConfigError(f"{sources.corpus} has no {sources.split} split")
    chosen: list[Example] = []
    want = min(sources.n, limit) if limit else sources.n
    for row in rows.itertuples():
        n_src = len(tok(row.source, add_special_tokens=False)["input_ids"])
        if not 1 <= n_src <= sources.max_source_tokens:
            continue
        ids = list(tok(prompt(row.source, demos))["input_ids"])
        chosen.append(Example(
            example_id=str(row.id), source=row.source, reference=row.target, source_ids=ids, source_tokens=n_src,
            reference_tokens=len(tok(row.target, add_special_tokens=False)["input_ids"]),
            max_len=min(sources.max_len, math.ceil(sources.max_len_ratio * n_src) + 5)))
        if len(chosen) == want:
            break
    return chosen


def chat_examples(corpus: str, split: str, n: int, tok: Any, max_len: int) -> list[Example]:
    """The first ``n`` distinct user messages of a prompt corpus's split in the model's chat template, without
    references."""
    from experiments.corpora import load_corpus
    from models.chat import prompt_ids

    rows = load_corpus(corpus, split=split).drop_duplicates("source").head(n)
    return [Example(example_id=str(r.id), source=r.source, reference=None, source_ids=prompt_ids(tok, r.source),
                    source_tokens=len(tok(r.source, add_special_tokens=False)["input_ids"]), reference_tokens=None,
                    max_len=max_len) for r in rows.itertuples()]


def load_translation_lm(model: str, *, shots: int, device: str = "cpu",
                        corpus: str | None = None) -> tuple[Any, Any, Any, Callable[..., str]]:
    """``(lm, tokenizer, info, prompt)``; ``prompt(source, demonstrations)`` is the text the model is given.

    An encoder-decoder model translates the source directly, and so does a decoder-only translation model of ``lq
    train mt`` (its prompt is the tokenised source, which ends in the separator </s>); a multi-task model of ``lq
    train mt --set tasks=[...]`` gets the source after the task prefix of ``corpus``, and a model trained on
    lowercased text (``--set lowercase=true``) the lowercased source. Any other decoder-only
    model gets a ``shots``-shot prompt
    (``experiments.corpora.few_shot_prompt``) and a translation ends at the first newline: the adapter treats the
    newline token as EOS and masks the model's own EOS and every other token that holds a newline (e.g. Gemma's
    "\\n\\n"), so "the empty translation" means a newline straight away."""
    from decoding.hf import HFCausalLM, HFSeq2SeqLM
    from experiments.corpora import few_shot_prompt
    from models import load_model
    from models.mt import DECODER_ONLY_FORMAT

    hf, tok, info = load_model(model, device=device)
    prefixes = getattr(hf.config, "lq_task_prefixes", None) or {}
    if prefixes and corpus not in prefixes:
        raise ConfigError(f"{model} is a multi-task model of {', '.join(prefixes)}; it has no task for {corpus}")
    prefix = prefixes.get(corpus, "")
    lower = bool(getattr(hf.config, "lq_lowercase", False))  # `lq train mt --set lowercase=true`

    def direct(source: str, demos: Any) -> str:
        return prefix + (source.lower() if lower else source)

    if info.is_encoder_decoder:
        return HFSeq2SeqLM(hf, tok), tok, info, direct
    if getattr(hf.config, "lq_input_format", None) == DECODER_ONLY_FORMAT:  # `lq train mt --set arch=decoder-only`
        return HFCausalLM(hf, tok), tok, info, direct
    newline = tok.encode("\n", add_special_tokens=False)
    if len(newline) != 1:
        raise ConfigError(f"{model}: a newline is {len(newline)} tokens; few-shot translation needs it to be one "
                          "(it ends a translation)")
    pieces = tok.batch_decode([[i] for i in range(len(tok))])
    multiline = [i for i, piece in enumerate(pieces) if "\n" in piece and i != newline[0]]
    lm = HFCausalLM(hf, tok, eos_id=newline[0], extra_masked_ids=[HFCausalLM(hf, tok).eos_id, *multiline])
    return lm, tok, info, lambda source, demos: few_shot_prompt(demos, source, k=shots)


def _unit(prefix: str, ex: Example, method: Method) -> str:
    return f"{prefix}{ex.example_id}/{method.name}"


def _units(examples: Sequence[Example], methods_: Sequence[Method], prefix: str) -> dict[str, tuple[Example, Method]]:
    """Every (example, method) unit by its name in the run directory, examples first."""
    names = [m.name for m in methods_]
    if len(set(names)) != len(names):
        raise ValueError(f"two methods share a name: {names}")
    return {_unit(prefix, ex, m): (ex, m) for ex in examples for m in methods_}


def pending(run: RunDir, examples: Sequence[Example], methods_: Sequence[Method], *,
            prefix: str = "") -> list[tuple[Example, Method]]:
    """The (example, method) units that ``run`` does not hold yet, examples first. ``prefix`` (e.g. the model's
    name and a slash) keeps the units of several models of one run apart."""
    units = _units(examples, methods_, prefix)
    done = run.done
    return [unit for name, unit in units.items() if name not in done]


Columns = Callable[[Example, Found], Mapping[str, Any]]
UnitRows = Callable[[Example, Method], list[dict[str, Any]]]


def _row_builder(lm: Any, tok: Any, model: str, dataset: str, columns: Columns | None) -> UnitRows:
    """``rows(example, method)``: the method's search of the example as result rows."""
    signature = lm.signature()

    def decode(ids: Sequence[int]) -> str:
        return str(tok.decode(ids, skip_special_tokens=True))

    def rows(ex: Example, method: Method) -> list[dict[str, Any]]:
        return result_rows(method.run(ex), family=method.family, settings=method.settings, example=ex.columns(),
                           model=model, dataset=dataset, signature=signature, decode=decode,
                           columns=None if columns is None else partial(columns, ex))

    return rows


def search_all(run: RunDir, todo: Sequence[tuple[Example, Method]], *, lm: Any, tok: Any, model: str, dataset: str,
               prefix: str = "", columns: Columns | None = None) -> None:
    """Run each unit of ``todo`` (from ``pending``) and append its rows to ``run`` as one unit: a kill loses at most
    the search under way. ``columns(example, found)``: further columns of each row (declared in
    ``analysis.frames.OPTIONAL_COLUMNS``)."""
    rows = _row_builder(lm, tok, model, dataset, columns)
    for ex, method in tqdm(todo, desc=f"searching {model}", unit="search", disable=not todo):
        run.append(_unit(prefix, ex, method), rows(ex, method))


@dataclass(frozen=True)
class Work:
    """One model's share of a run: the loaded model (``lm``, ``tok``), the examples and methods it searches, and what
    its rows record (``model``, ``dataset``, further ``columns``); ``prefix`` as in ``pending``."""

    lm: Any
    tok: Any
    model: str
    dataset: str
    examples: Sequence[Example]
    methods: Sequence[Method]
    prefix: str = ""
    columns: Columns | None = None

    def units(self) -> dict[str, tuple[Example, Method]]:
        """Every unit of the work by its name in the run directory, examples first."""
        return _units(self.examples, self.methods, self.prefix)

    def row_builder(self) -> UnitRows:
        return _row_builder(self.lm, self.tok, self.model, self.dataset, self.columns)


def execute(run: RunDir, recipe: Callable[[], Work], *, ray: RayOptions | None = None,
            work: Work | None = None) -> None:
    """Search every unit of the work ``recipe()`` builds that ``run`` does not hold yet, appending each unit's rows
    as it completes. In this process (``search_all``; ``work``, when the caller has built it already, instead of
    calling ``recipe``), or with ``ray`` on Ray actors that each call ``recipe`` once, so ``recipe`` must pickle:
    ``functools.partial`` of a module-level function and its config, never a closure over a loaded model."""
    if ray is not None:
        from experiments.distributed import search_on_ray

        search_on_ray(run, recipe, ray)
        return
    w = work or recipe()
    search_all(run, pending(run, w.examples, w.methods, prefix=w.prefix), lm=w.lm, tok=w.tok, model=w.model,
               dataset=w.dataset, prefix=w.prefix, columns=w.columns)
