"""``lq paper``: the paper's figures, tables and numbers regenerated from the committed runs (DESIGN.md §7).

``paper/results/<experiment>/`` holds one run directory per experiment (config.json and rows.parquet; rows.jsonl
is not committed). For each, ``build`` writes into ``paper/generated/``:

- ``<experiment>/<figure>.pdf`` (and .png): every figure ``figures.render`` can draw from the run;
- ``<experiment>_summary.tex``: ``experiments.report.summary_table`` as a caption-free booktabs tabular, one row per
  method, each cell "value [lo, hi]" (95% CI); paper.tex wraps it in a table environment;
- ``numbers.tex``: one ``\\lqdef{<experiment>.<key>}{<value>}`` per number the text may quote (run size, config,
  how the shipped model was trained, every cell of the summary table, the certified modes' empty rate and its
  logistic fit on source length, the likelihood-quality rank correlation, paired bootstrap tests against
  ``PAIRED_BASELINE``), plus ``def.<key>`` for the definitions the method section states (degeneracy thresholds,
  sacreBLEU signatures). The text quotes them only through ``\\measured{key}``, so every number in the paper is a
  measured one.

An experiment that paper.tex discusses (``EXPERIMENTS``) but has no run yet gets a visible "results not yet
generated" table; its figures (paper.tex checks that each file exists) and numbers (an undefined key prints as a
red marker) show placeholders too, so the paper builds at every stage. Then ``latexmk`` builds paper/paper.pdf if
it is installed; if not, ``build`` says how to install TeX and leaves the generated sources ready.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import methods, stats
from analysis.conditional import largest_beam_sizes, likelihood_cost, method_summary, satisfies, win_rates
from analysis.contamination import mode_rates, quality_by_setting
from analysis.frames import CONFIG, ROWS_JSONL, ROWS_PARQUET, is_true, load_run, rows
from analysis.likelihood import MODE_FAMILY
from experiments.report import CALIBRATION, TOY, render_figures, summary_table
from figures import hso as hso_figures
from figures import hso_fewshot as fewshot_figures
from figures import nar as nar_figures
from figures import recurrence as recurrence_figures
from figures import style
from models.errors import InputError

__all__ = ["EXPERIMENTS", "INSTALL_TEX", "N_BOOT", "PAIRED_BASELINE", "PLACEHOLDER", "build", "calibration_numbers",
           "conditional_latex", "definitions", "generate", "numbers", "summary_latex", "tex_escape", "tex_number"]

EXPERIMENTS = ("modes", "contamination", "conditional", "modes_gemma3", "modes_gemma3_hso")
"""The experiments paper.tex discusses, in its order; a run under another name is generated too."""
OWN_TABLES = ("hso_perplexity", "hso_fewshot", "recurrence", "nar")
"""Run directories whose rows are not search results (perplexity per segment, few-shot predictions): their
tables are their own run's summary.csv (``OWN_SUMMARIES``) and their figures are drawn from the committed tables
by their own ``figures`` module."""
PAIRED_BASELINE = "beam5"
"""The method every other one is compared with by paired bootstrap: the beam width of common NMT practice."""
N_BOOT = 1000
"""Bootstrap resamples behind every interval and paired test in the paper."""
TEX_PACKAGES = ("latexmk", "texlive-latex-recommended", "texlive-latex-extra", "texlive-fonts-recommended")
INSTALL_TEX = "apt-get install -y " + " ".join(TEX_PACKAGES)
GENERATED = "generated"
NUMBERS = "numbers.tex"
PLACEHOLDER = "results not yet generated"
LOG_LINES = 40

# digits after the point per summary_table column; the rest get 1, as in report.md
_DIGITS = {"n": 0, "sec/source": 2}
_TEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}

Number = tuple[str, Any, str]
"""(key without the experiment prefix, raw value, TeX text)."""


def tex_escape(text: object) -> str:
    """``text`` as LaTeX prints it literally (outside math and verbatim)."""
    return "".join(_TEX_SPECIALS.get(c, c) for c in str(text))


def tex_number(value: Any, digits: int = 1) -> str:
    """``value`` rounded to ``digits`` for running text; ``--`` where there is none (NaN: e.g. the certified
    share of a search that certifies nothing). The minus sign is a real one in text and math alike."""
    if value is None or pd.isna(value) or not math.isfinite(float(value)):
        return "--"
    text = f"{float(value):.{digits}f}"
    if float(text) == 0:
        # a Wilson bound at a rate of 0 can miss it by float rounding: no "-0.0" in the paper
        text = text.lstrip("-")
    return r"\ensuremath{-}" + text[1:] if text.startswith("-") else text


def _number(key: str, value: Any, digits: int = 1) -> Number:
    return key, value, tex_number(value, digits)


def _interval(key: str, value: Any, lo: Any, hi: Any, digits: int = 1) -> list[Number]:
    return [_number(key, value, digits), _number(f"{key}.lo", lo, digits), _number(f"{key}.hi", hi, digits)]


def _slug(name: str) -> str:
    """A summary_table column as a key part: "search error %" -> "searcherror", "sec/source" -> "secsource"."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _config_text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(_config_text(v) for v in value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        text = f"{value:g}"
        return r"\ensuremath{-}" + text[1:] if text.startswith("-") else text
    return "none" if value is None else tex_escape(value)


def _definition_numbers() -> Iterator[Number]:
    """The definitions the method section states: degeneracy thresholds, the search-error tolerance, the bootstrap
    size and sacreBLEU's signatures (breakable at each ``|``, they are long)."""
    from analysis.degeneracy import DegeneracyThresholds
    from analysis.likelihood import SEARCH_ERROR_TOL
    from analysis.quality import signatures

    for name, value in dataclasses.asdict(DegeneracyThresholds()).items():
        yield _slug(name), value, _config_text(value)
    yield "searcherrortol", SEARCH_ERROR_TOL, _config_text(SEARCH_ERROR_TOL)
    yield "nboot", N_BOOT, _config_text(N_BOOT)
    for metric, signature in signatures().items():
        parts = [tex_escape(part) for part in signature.split("|")]
        yield f"signature.{_slug(metric)}", signature, r"\texttt{" + r"|\allowbreak ".join(parts) + "}"


def _training_meta(model: str) -> dict[str, Any] | None:
    """``training.json`` of a shipped model (written by ``lq train mt``); None for any other model."""
    from models import NAMED_MODELS, ShippedModelSpec, named_model_status

    if not isinstance(NAMED_MODELS.get(model), ShippedModelSpec):
        return None
    path = named_model_status(model).folder / "training.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _training_numbers(df: pd.DataFrame) -> Iterator[Number]:
    """How the run's model was trained, where it is the shipped model: ``training.config.<key>``, steps, epochs,
    hours and the final development-set scores (``training.devbleu``, ...)."""
    models = df["model"].dropna().unique()
    meta = _training_meta(str(models[0])) if len(models) == 1 else None
    if meta is None:
        return
    for key, value in meta.get("config", {}).items():
        yield f"training.config.{key}", value, _config_text(value)
    if "steps" in meta:
        yield _number("training.steps", meta["steps"], 0)
    if "epochs" in meta:
        yield _number("training.epochs", meta["epochs"])
    if "training_seconds" in meta:
        yield _number("training.hours", meta["training_seconds"] / 3600)
    for key, value in (meta.get("final_eval") or {}).items():
        yield _number(f"training.{_slug(key)}", value, 2 if "loss" in key else 1)


def _config_numbers(config: dict[str, Any]) -> Iterator[Number]:
    """``config.<key>`` for every key of a run's config.json (``config.<key>.<name>`` for a per-name mapping)."""
    for key, value in config.get("config", {}).items():
        for name, item in value.items() if isinstance(value, dict) else [(None, value)]:
            yield f"config.{key}" + ("" if name is None else f".{_slug(name)}"), item, _config_text(item)


def _run_numbers(df: pd.DataFrame, config: dict[str, Any]) -> Iterator[Number]:
    yield _number("sources", df["example_id"].nunique(), 0)
    yield _number("rows", len(df), 0)
    for column in ("model", "dataset"):
        names = ", ".join(sorted(df[column].dropna().unique()))
        yield column, names, tex_escape(names)
    if "run_id" in config:
        yield "runid", config["run_id"], tex_escape(config["run_id"])
    yield from _config_numbers(config)
    if "source_tokens" in df.columns:
        lengths = df.groupby("example_id")["source_tokens"].first().astype(float)
        yield _number("sourcetokens.mean", lengths.mean())
        yield _number("sourcetokens.min", lengths.min(), 0)
        yield _number("sourcetokens.max", lengths.max(), 0)


def _method_numbers(table: pd.DataFrame) -> Iterator[Number]:
    """Every cell of the summary table: ``<method>.<metric>`` (``<model>.<method>.<metric>`` when it has several
    models) with ``.lo`` and ``.hi`` where it has a CI."""
    for row in table.to_dict("records"):
        prefix = f"{_slug(row['model'])}.{row['method']}" if "model" in table.columns else row["method"]
        for column in table.columns:
            if column in ("model", "method") or column.endswith((" lo", " hi")):
                continue
            key, digits = f"{prefix}.{_slug(column)}", _DIGITS.get(column, 1)
            if f"{column} lo" in table.columns:
                yield from _interval(key, row[column], row[f"{column} lo"], row[f"{column} hi"], digits)
            else:
                yield _number(key, row[column], digits)


def _mode_numbers(df: pd.DataFrame) -> Iterator[Number]:
    """How often the certified exact mode is empty (Wilson CI), and the logistic fit of that on source length
    as the odds ratio per 10 source tokens (Wald CI, p-value); nothing where no exact search ran."""
    modes = rows(df, family=MODE_FAMILY)
    if modes.empty:
        return
    certified = modes[is_true(modes["certified"])]
    yield _number("certifiedmodes.n", len(certified), 0)
    rate = stats.rate_ci(certified, "empty", by=None).iloc[0]
    yield from _interval("certifiedmodes.empty", 100 * rate["value"], 100 * rate["lo"], 100 * rate["hi"])
    if "source_tokens" not in df.columns:
        return
    try:
        coefficients, _ = stats.logistic_fit(certified, x="source_tokens", y="empty")
    except ValueError:
        # all modes empty, none empty, or lengths separating them: no finite fit, and the text shows the marker
        return
    slope = coefficients.set_index("term").loc["source_tokens"]
    odds = {c: math.exp(10 * slope[c]) for c in ("estimate", "lo", "hi")}
    yield from _interval("emptylength.oddsratio10", odds["estimate"], odds["lo"], odds["hi"], digits=2)
    yield _number("emptylength.p", slope["p_value"], 3)


def _correlation_numbers(df: pd.DataFrame) -> Iterator[Number]:
    """Mean per-source rank correlation of log-probability and sentence chrF over each source's distinct outputs."""
    if not {"logprob", "chrf", "text"} <= set(df.columns) or df.empty:
        return
    for r in stats.rank_correlation(df, x="logprob", y="chrf", n_boot=N_BOOT).to_dict("records"):
        yield from _interval(f"likelihoodchrf.{r['statistic']}", r["value"], r["lo"], r["hi"], digits=2)
        yield _number(f"likelihoodchrf.{r['statistic']}.sources", r["n_sources"], 0)


def _paired_numbers(df: pd.DataFrame) -> Iterator[Number]:
    """Every method against ``PAIRED_BASELINE`` (paired bootstrap, Koehn 2004): corpus BLEU and chrF difference
    ``<method>.vs<baseline>.<metric>`` and its p-value ``.p``; only for runs of one model."""
    if PAIRED_BASELINE not in set(df["method"]) or df["model"].nunique() > 1:
        return
    for metric in ("bleu", "chrf"):
        for r in stats.paired_bootstrap(df, metric, baseline=PAIRED_BASELINE, n_boot=N_BOOT).to_dict("records"):
            key = f"{r['method']}.vs{PAIRED_BASELINE}.{metric}"
            yield _number(key, r["delta"])
            yield _number(f"{key}.p", r["p_value"], 3)


def _eps_key(eps: float) -> str:
    """0.001 -> "eps0p001": a key part without the dot that separates key parts."""
    return "eps" + f"{eps:g}".replace(".", "p")


def _contamination_numbers(df: pd.DataFrame) -> Iterator[Number]:
    """Per (noise, eps): measured share of degenerate certified modes (``<noise>.<eps>.<D>.rate``, CI), the
    closed-form prediction (``.predicted``), mean P(D), and beam BLEU (CI) and reference perplexity."""
    if "noise" not in df.columns:
        return
    for r in mode_rates(df).to_dict("records"):
        key = f"{r['noise']}.{_eps_key(r['epsilon'])}.{r['degenerate_output']}"
        yield from _interval(f"{key}.rate", 100 * r["rate"], 100 * r["lo"], 100 * r["hi"])
        yield _number(f"{key}.predicted", 100 * r["predicted"])
        yield _number(f"{key}.predictedlearned", 100 * r["predicted_learned"])
        yield _number(f"{key}.n", r["n"], 0)
        yield f"{key}.meanp", r["mean_p"], f"{r['mean_p']:.2g}"
    for r in quality_by_setting(df, n_boot=N_BOOT).to_dict("records"):
        key = f"{r['noise']}.{_eps_key(r['epsilon'])}"
        yield from _interval(f"{key}.bleu", r["bleu"], r["bleu_lo"], r["bleu_hi"])
        yield _number(f"{key}.perplexity", r["perplexity"], 2)


def _conditional_numbers(df: pd.DataFrame) -> Iterator[Number]:
    """For a conditional run, per model (``<model>.``): each method's search time over plain beam search's at the
    same k (``<method>.timevsbeam``, CI) and its sources without an output (``<method>.nooutput``), the likelihood
    cost of conditioning per k (``k<k>.likelihoodcost``, CI), conditional beam search's win and loss rates against
    every method at the largest k (``k<k>.wins.<method>``, ``k<k>.losses.<method>``, %), and how often the
    unconditional exact output copies the source (``exact.copy``) or lacks A (``exact.lacksa``, %, Wilson)."""
    if "attribute_holds" not in df.columns:
        return
    for r in method_summary(df, n_boot=N_BOOT).to_dict("records"):
        yield from _interval(f"{_slug(r['model'])}.{r['method']}.timevsbeam", r["time_vs_beam"],
                             r["time_vs_beam_lo"], r["time_vs_beam_hi"], digits=2)
        yield _number(f"{_slug(r['model'])}.{r['method']}.nooutput", r["no_output"], 0)
    for r in likelihood_cost(df, n_boot=N_BOOT).to_dict("records"):
        yield from _interval(f"{_slug(r['model'])}.k{r['beam_size']}.likelihoodcost", r["delta_logprob"], r["lo"],
                             r["hi"], digits=2)
    for model, k in largest_beam_sizes(df).items():
        wins = 100 * win_rates(df, model=model, beam_size=k)
        method = methods.label("conditional_beam", {"beam_size": k})
        for other in wins.columns.drop(method):
            yield _number(f"{_slug(model)}.k{k}.wins.{other}", wins.loc[method, other], 0)
            yield _number(f"{_slug(model)}.k{k}.losses.{other}", wins.loc[other, method], 0)
    exact = df[(df["method"] == "exact") & (df["rank"] == 0)].assign(lacks=lambda d: ~satisfies(d))
    for column, key in (("copy_near", "copy"), ("lacks", "lacksa")):
        for r in stats.rate_ci(exact, column, by="model").to_dict("records"):
            yield from _interval(f"{_slug(r['model'])}.exact.{key}", 100 * r["value"], 100 * r["lo"], 100 * r["hi"])


def calibration_numbers(calibration: pd.DataFrame) -> Iterator[Number]:
    """Each model's classifier on held-out sources: ``<model>.classifier.ece``, ``.accuracy`` (%), ``.majority``
    (%, the accuracy of always predicting the majority label) and ``.prefixes`` (held-out prefixes scored)."""
    for model, group in calibration.groupby("model"):
        first = group.iloc[0]
        positions = group[group["table"] == "by_position"]
        positive = float((positions["n"] * positions["positive_rate"]).sum() / positions["n"].sum())
        yield _number(f"{_slug(model)}.classifier.ece", first["ece"], 3)
        yield _number(f"{_slug(model)}.classifier.accuracy", 100 * first["held_out_accuracy"])
        yield _number(f"{_slug(model)}.classifier.majority", 100 * max(positive, 1 - positive))
        yield _number(f"{_slug(model)}.classifier.prefixes", int(positions["n"].sum()), 0)


def conditional_latex(df: pd.DataFrame) -> str:
    """The conditional table: per model, every method at the largest beam size and the exact searches, with the
    share of outputs with A, degenerate outputs, mean log-likelihood, BLEU and the time relative to beam search."""
    summary = method_summary(df, n_boot=N_BOOT)
    largest = largest_beam_sizes(df)
    keep = summary[summary["beam_size"].isna() | (summary["beam_size"] == summary["model"].map(largest))]

    def ci(r: dict[str, Any], column: str, scale: float = 1.0, digits: int = 1) -> str:
        value = tex_number(scale * r[column], digits)
        return value if value == "--" else (f"{value} [{tex_number(scale * r[f'{column}_lo'], digits)}, "
                                            f"{tex_number(scale * r[f'{column}_hi'], digits)}]")

    records = [{"model": tex_escape(r["model"]), "method": tex_escape(methods.display(r["family"], r["beam_size"])),
             r"A holds \%": ci(r, "attribute_holds", 100), r"degenerate \%": ci(r, "degenerate", 100),
             "log-likelihood": ci(r, "logprob"), "BLEU": ci(r, "bleu"),
             "time / beam": ci(r, "time_vs_beam", digits=2)} for r in keep.to_dict("records")]
    cells = pd.DataFrame(records)
    return cells.style.hide(axis="index").to_latex(hrules=True, column_format="ll" + "r" * (len(cells.columns) - 2))


def toy_numbers(toy: pd.DataFrame) -> Iterator[Number]:
    """The exact toy check of the theory: how many mixtures, how many certified, and how many agree with it."""
    agree = toy["mode_is_degenerate"] == toy["predicted_degenerate"]
    yield _number("toy.n", len(toy), 0)
    yield _number("toy.populations", toy[["kind", "vocab_size", "length", "shape", "seed"]].drop_duplicates().shape[0],
                  0)
    yield _number("toy.certified", int(toy["certified"].sum()), 0)
    yield _number("toy.agree", int(agree.sum()), 0)
    yield _number("toy.conditional", int(toy["conditional_mode_is_population"].sum()), 0)
    yield _number("toy.lengthconditional", int(toy["length_conditional_is_population"].sum()), 0)


def contamination_latex(df: pd.DataFrame) -> str:
    """The contamination table: one row per (noise, eps) with the measured shares of empty and copy modes,
    their predictions, beam BLEU and reference perplexity."""
    rates = mode_rates(df)
    quality = quality_by_setting(df, n_boot=N_BOOT).set_index(["noise", "epsilon"])
    records = []
    for (noise, eps), group in rates.groupby(["noise", "epsilon"], sort=False):
        by_d = group.set_index("degenerate_output")
        q = quality.loc[(noise, eps)]
        row = {"noise": noise, "$\\varepsilon$": f"{eps:g}"}
        for d in ("empty", "copy"):
            r = by_d.loc[d]
            row[f"{d} modes \\%"] = (f"{tex_number(100 * r['rate'])} [{tex_number(100 * r['lo'])}, "
                                       f"{tex_number(100 * r['hi'])}]")
            row[f"{d} predicted \\% (nominal / learned)"] = (f"{tex_number(100 * r['predicted'])} / "
                                                           f"{tex_number(100 * r['predicted_learned'])}")
        row["certified"] = f"{int(group['n'].iloc[0])}/{int(group['n'].iloc[0] + group['uncertified'].iloc[0])}"
        row["BLEU"] = f"{tex_number(q['bleu'])} [{tex_number(q['bleu_lo'])}, {tex_number(q['bleu_hi'])}]"
        row["perplexity"] = tex_number(q["perplexity"], 2)
        records.append(row)
    cells = pd.DataFrame(records)
    return cells.style.hide(axis="index").to_latex(hrules=True, column_format="ll" + "r" * (len(cells.columns) - 2))


def numbers(experiment: str, df: pd.DataFrame, table: pd.DataFrame, config: dict[str, Any]) -> pd.DataFrame:
    """Every number the paper may quote about one experiment's run: one row per macro with ``key``
    (``<experiment>.<name>``), the raw ``value`` and ``tex``, what ``\\measured{key}`` prints."""
    found = [*_run_numbers(df, config), *_training_numbers(df), *_method_numbers(table), *_mode_numbers(df),
             *_correlation_numbers(df), *_paired_numbers(df), *_contamination_numbers(df), *_conditional_numbers(df)]
    out = pd.DataFrame(found, columns=["key", "value", "tex"])
    out["key"] = experiment + "." + out["key"]
    return out


def definitions() -> pd.DataFrame:
    """The definitions the text states, as ``numbers`` rows with keys ``def.<name>``."""
    out = pd.DataFrame(list(_definition_numbers()), columns=["key", "value", "tex"])
    out["key"] = "def." + out["key"]
    return out


def _cells(table: pd.DataFrame, column: str) -> list[str]:
    """A summary_table column as table cells: "value [lo, hi]" where it has a CI, "--" where it has no value."""
    digits = _DIGITS.get(column, 1)

    def text(c: str) -> list[str]:
        return [tex_number(v, digits) for v in table[c]]

    if f"{column} lo" not in table.columns:
        return text(column)
    return [v if v == "--" else f"{v} [{lo}, {hi}]"
            for v, lo, hi in zip(text(column), text(f"{column} lo"), text(f"{column} hi"), strict=True)]


def summary_latex(table: pd.DataFrame, df: pd.DataFrame) -> str:
    """``summary_table`` of the rows ``df`` as a booktabs tabular without float or caption: one row per method,
    "value [lo, hi]"."""
    of = methods.keys(df)
    cells = pd.DataFrame({"method": [tex_escape(methods.display(*of[m])) for m in table["method"]]})
    for column in table.columns:
        if column != "method" and not column.endswith((" lo", " hi")):
            cells[column] = _cells(table, column)
    styler = cells.style.hide(axis="index").format_index(escape="latex", axis="columns")
    return styler.to_latex(hrules=True, column_format="l" + "r" * (len(cells.columns) - 1))


@dataclasses.dataclass(frozen=True)
class Metric:
    """A column of an experiment's own ``summary.csv`` as the paper prints it: ``value`` (and its CI columns
    ``lo``/``hi``), times ``scale``, to ``digits``."""

    label: str
    key: str
    value: str
    lo: str | None = None
    hi: str | None = None
    digits: int = 2
    scale: float = 1.0


@dataclasses.dataclass(frozen=True)
class OwnSummary:
    """How the paper shows an OWN_TABLES experiment's ``summary.csv``: the columns printed before the metrics, the
    columns whose values key a row's numbers (default: the printed ones), and the metrics."""

    shown: tuple[str, ...]
    metrics: tuple[Metric, ...]
    keys: tuple[str, ...] = ()
    figures: tuple[tuple[str, str, Callable[[pd.DataFrame], Any]], ...] = ()
    """(figure name, the run's table it is drawn from, the plot: a ``figures.style.Requires.plot``)"""
    extra: Callable[[dict[str, Any], Path], Iterator[Number]] | None = None
    """More numbers, from the run's config.json and folder (e.g. how the model under study was trained)."""
    printed: dict[str, str] = dataclasses.field(default_factory=dict)
    """Only the rows with these values are printed (every row's numbers are generated)."""


def _recurrence_module_numbers(config: dict[str, Any], run_dir: Path) -> Iterator[Number]:
    """How the recurrence module of a ``recurrence`` run was trained (its ``recurrence.json``): ``module.*``."""
    from models.recurrence import SETTINGS_FILE, module_folder

    meta = json.loads((module_folder(config["config"]["module"]) / SETTINGS_FILE).read_text())
    yield _number("module.parameters", meta["n_parameters"] / 1e6, 2)
    yield _number("module.steps", meta["steps"], 0)
    yield _number("module.minutes", meta["training_seconds"] / 60, 0)
    yield _number("module.traintokens", meta["n_train_tokens"] / 1e6, 1)
    for key in ("dev_nll", "dev_nll_base"):
        yield _number(f"module.{_slug(key)}", meta["final"][key], 3)
    for key, value in meta["settings"].items():
        yield f"module.{_slug(key)}", value, _config_text(value)
    for key in ("k_windows", "windows", "batch"):
        yield f"module.config.{_slug(key)}", meta["config"][key], _config_text(meta["config"][key])


def _nar_training_numbers(config: dict[str, Any], run_dir: Path) -> Iterator[Number]:
    """How each system of a ``nar`` run was trained (its ``training.json``): ``training.<system>.*``."""
    from experiments.nar import TRAINING

    for system, record in json.loads((run_dir / TRAINING).read_text()).items():
        key = f"training.{_slug(system)}"
        yield _number(f"{key}.steps", record["steps"], 0)
        yield _number(f"{key}.minutes", record["training_seconds"] / 60, 0)
        if record.get("n_parameters"):
            yield _number(f"{key}.parameters", record["n_parameters"] / 1e6, 1)
        if record.get("epochs"):
            yield _number(f"{key}.epochs", record["epochs"], 2)
        if "train_loss" in (record.get("final") or {}):
            yield _number(f"{key}.trainloss", record["final"]["train_loss"], 2)
        if record.get("output_vocabulary"):
            yield _number(f"{key}.outputs", record["output_vocabulary"], 0)
        for name in ("lr", "max_tokens", "warmup_steps"):
            if name in (record.get("config") or {}):
                yield f"{key}.config.{_slug(name)}", record["config"][name], _config_text(record["config"][name])


OWN_SUMMARIES: dict[str, OwnSummary] = {
    # keyed by method, not by the tuned setting the table prints, so the text's keys survive a retuned run
    "hso_perplexity": OwnSummary(("model", "domain", "name"), keys=("model", "domain", "method"), metrics=(
        Metric("perplexity", "ppl", "ppl", "ppl_lo", "ppl_hi"),
        Metric("Δ log-ppl", "dlogppl", "delta_logppl", "delta_lo", "delta_hi", 3),
        Metric("s/token", "stoken", "s_per_token", digits=3), Metric("state MB", "statemb", "state_mb", digits=0)),
        figures=(("hso_perplexity", "summary.csv", hso_figures.perplexity),
                 ("hso_steps", "tuning.csv", hso_figures.steps))),
    "hso_fewshot": OwnSummary(("model", "dataset", "shots", "method"), metrics=(
        Metric("accuracy %", "accuracy", "accuracy", "accuracy_lo", "accuracy_hi", 1, 100.0),
        Metric("macro-F1 %", "macrof1", "macro_f1", "macro_f1_lo", "macro_f1_hi", 1, 100.0),
        Metric("Δ acc. vs ICL", "dicl", "delta_icl", "delta_icl_lo", "delta_icl_hi", 1, 100.0),
        Metric("s/pred", "spred", "s_per_pred", digits=3)),
        figures=(("hso_fewshot", "summary.csv", fewshot_figures.accuracy),
                 ("hso_fewshot_steps", "summary.csv", fewshot_figures.steps))),
    "recurrence": OwnSummary(("domain", "method"), printed={"domain": "all"}, metrics=(
        Metric("pieces", "pieces", "pieces", digits=0), Metric("perplexity", "ppl", "ppl", "ppl_lo", "ppl_hi"),
        Metric("Δ vs sliding+sink", "dsliding", "delta_sliding", "delta_sliding_lo", "delta_sliding_hi", 3),
        Metric("Δ vs full", "dfull", "delta_full", "delta_full_lo", "delta_full_hi", 3),
        Metric("s/token", "stoken", "s_per_token", digits=4), Metric("state MB", "statemb", "state_mb", digits=1)),
        figures=(("recurrence_memory", "summary.csv", recurrence_figures.memory),
                 ("recurrence_time", "summary.csv", recurrence_figures.time)), extra=_recurrence_module_numbers),
    "nar": OwnSummary(("model", "method"), metrics=(
        Metric("BLEU", "bleu", "bleu", "bleu_lo", "bleu_hi", 1),
        Metric("chrF", "chrf", "chrf", "chrf_lo", "chrf_hi", 1),
        Metric("AR NLL/token", "arnll", "ar_nll", "ar_nll_lo", "ar_nll_hi", 2),
        Metric("rep. %", "rep", "rep_consecutive", digits=1),
        Metric("length error", "lenerr", "length_error", digits=1),
        Metric("steps run", "stepsrun", "steps_run", digits=1),
        Metric("sent./s", "sps", "sentences_per_s", digits=1),
        Metric("speed-up vs greedy", "spgreedy", "speedup_greedy", "speedup_greedy_lo", "speedup_greedy_hi", 2),
        Metric("vs beam", "spbeam", "speedup_beam", "speedup_beam_lo", "speedup_beam_hi", 2)),
        figures=(("nar_steps", "summary.csv", nar_figures.steps),
                 ("nar_likelihood", "summary.csv", nar_figures.likelihood)), extra=_nar_training_numbers),
}


def own_summary(experiment: str, table: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """An OWN_TABLES experiment's ``summary.csv`` as a booktabs tabular ("value [lo, hi]") and its numbers, keyed
    ``<experiment>.<row key parts>.<metric>``."""
    spec = OWN_SUMMARIES[experiment]
    printed = pd.Series(True, index=table.index)
    for name, value in spec.printed.items():
        printed &= table[name].astype(str) == value
    cells = pd.DataFrame({k: [tex_escape(v) for v in table.loc[printed, k]] for k in spec.shown})
    found: list[Number] = []
    row_keys = [".".join(_slug(str(v)) or "x" for v in row)
                for row in table[list(spec.keys or spec.shown)].itertuples(index=False)]
    def column(name: str | None, scale: float) -> pd.Series:
        return table[name] * scale if name is not None and name in table else pd.Series(math.nan, index=table.index)

    for m in spec.metrics:
        value, lo, hi = (column(c, m.scale) for c in (m.value, m.lo, m.hi))
        cells[m.label] = [tex_number(v, m.digits) if m.lo is None or pd.isna(v) else
                          f"{tex_number(v, m.digits)} [{tex_number(a, m.digits)}, {tex_number(b, m.digits)}]"
                          for v, a, b in zip(value[printed], lo[printed], hi[printed], strict=True)]
        for key, v, a, b in zip(row_keys, value, lo, hi, strict=True):
            found += _interval(f"{key}.{m.key}", v, a, b, m.digits) if m.lo else [_number(f"{key}.{m.key}", v,
                                                                                          m.digits)]
    styler = cells.style.hide(axis="index").format_index(escape="latex", axis="columns")
    latex = styler.to_latex(hrules=True, column_format="l" * len(spec.shown) + "r" * len(spec.metrics))
    out = pd.DataFrame(found, columns=["key", "value", "tex"])
    return latex, out.assign(key=experiment + "." + out["key"])


def _placeholder(what: str) -> str:
    return f"\\notyet{{{tex_escape(what)}}}\n"


def _run_dirs(results: Path) -> dict[str, Path]:
    if not results.is_dir():
        return {}
    return {d.name: d for d in sorted(results.iterdir())
            if d.name not in OWN_TABLES and ((d / ROWS_PARQUET).is_file() or (d / ROWS_JSONL).is_file())}


def _write_numbers(path: Path, frames: list[pd.DataFrame], notes: list[str]) -> None:
    lines = ["% Generated by `lq paper` from the committed runs; do not edit. One \\lqdef{key}{value} per number the",
             "% text may quote; paper.tex prints them with \\measured{key} and \\measuredci{key} (value [lo, hi]).",
             "\\providecommand{\\lqdef}[2]{\\expandafter\\newcommand\\csname lqnum.#1\\endcsname{#2}}",
             *(f"% {note}" for note in notes)]
    for frame in frames:
        lines += [f"\\lqdef{{{key}}}{{{tex}}}" for key, tex in zip(frame["key"], frame["tex"], strict=True)]
    path.write_text("\n".join(lines) + "\n")


def generate(results: Path, paper_dir: Path) -> Path:
    """Rewrite ``paper_dir/generated`` from the run directories under ``results``; returns that folder."""
    out = paper_dir / GENERATED
    # everything in it is derived: starting empty keeps no figure of a run that has since been replaced
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    runs = _run_dirs(results)
    frames, notes = [definitions()], []
    for experiment in [*EXPERIMENTS, *(name for name in runs if name not in EXPERIMENTS)]:
        table_path = out / f"{experiment}_summary.tex"
        if experiment not in runs:
            table_path.write_text(_placeholder(f"{PLACEHOLDER}: no run directory in {results / experiment}"))
            notes.append(f"{experiment}: {PLACEHOLDER} (no run in {results / experiment})")
            print(f"{experiment}: no run in {results / experiment}; placeholders written")
            continue
        run_dir = runs[experiment]
        df = load_run(run_dir)
        config = json.loads((run_dir / CONFIG).read_text()) if (run_dir / CONFIG).is_file() else {}
        table = summary_table(df, n_boot=N_BOOT)
        figures = render_figures(run_dir, df, out / experiment)
        table_path.write_text(contamination_latex(df) if "noise" in df.columns else conditional_latex(df)
                              if "attribute_holds" in df.columns else summary_latex(table, df))
        frames.append(numbers(experiment, df, table, config))
        for name, extra in ((TOY, toy_numbers), (CALIBRATION, calibration_numbers)):
            if (run_dir / name).is_file():
                more = pd.DataFrame(list(extra(pd.read_parquet(run_dir / name))), columns=["key", "value", "tex"])
                frames.append(more.assign(key=experiment + "." + more["key"]))
        notes.append(f"{experiment}: {run_dir} (run {config.get('run_id', 'unknown')})")
        print(f"{experiment}: {run_dir} -> {len(figures) // 2} figures, {table_path.name}, "
              f"{len(frames[-1])} numbers")
    for experiment in OWN_TABLES:
        summary = results / experiment / "summary.csv"
        table_path = out / f"{experiment}_summary.tex"
        if not summary.is_file():
            table_path.write_text(_placeholder(f"{PLACEHOLDER}: no finished run in {results / experiment}"))
            notes.append(f"{experiment}: {PLACEHOLDER} (no summary.csv in {results / experiment})")
            continue
        latex, found = own_summary(experiment, pd.read_csv(summary))
        table_path.write_text(latex)
        config_path = results / experiment / CONFIG
        config = json.loads(config_path.read_text()) if config_path.is_file() else {}
        add = OWN_SUMMARIES[experiment].extra
        found_more = add(config, results / experiment) if add and config else []
        more = pd.DataFrame([*_config_numbers(config), *found_more], columns=["key", "value", "tex"])
        frames += [found, more.assign(key=experiment + "." + more["key"])]
        for name, table_file, plot in OWN_SUMMARIES[experiment].figures:
            try:
                style.save(plot(pd.read_csv(results / experiment / table_file)), out / experiment / name)
            except (OSError, ValueError) as err:  # a run without that table or those rows: the figure's placeholder
                print(f"{experiment}: no figure {name}: {err}")
        notes.append(f"{experiment}: {results / experiment}")
        print(f"{experiment}: {summary} -> {table_path.name}, {len(found)} numbers")
    _write_numbers(out / NUMBERS, frames, notes)
    return out


def _latexmk(paper_dir: Path) -> Path:
    done = subprocess.run(["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "paper.tex"],
                          cwd=paper_dir, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        log = paper_dir / "paper.log"
        text = log.read_text(errors="replace") if log.is_file() else done.stdout + done.stderr
        print("\n".join(text.splitlines()[-LOG_LINES:]))
        raise InputError(f"latexmk failed (exit {done.returncode}); the last {LOG_LINES} lines of "
                         f"{log if log.is_file() else 'its output'} are above")
    return paper_dir / "paper.pdf"


def build(results: Path | None = None, *, paper_dir: Path = Path("paper"), pdf: bool = True) -> Path:
    """Regenerate ``paper_dir/generated`` from ``results`` (default ``paper_dir/results``) and, if ``pdf`` and
    latexmk is installed, build ``paper_dir/paper.pdf``. Returns the PDF, or the generated folder when none was
    built; a missing latexmk is not an error (the message says how to install TeX)."""
    if not (paper_dir / "paper.tex").is_file():
        raise InputError(f"no paper.tex in {paper_dir.resolve()}: run `lq paper` from the repository root")
    generated = generate(paper_dir / "results" if results is None else results, paper_dir)
    if not pdf:
        return generated
    if shutil.which("latexmk") is None:
        print(f"\nlatexmk is not installed, so no PDF was built; the generated sources in {generated} are ready.\n"
              f"Install TeX from Debian packages (as root; several hundred MB):\n\n    {INSTALL_TEX}\n\n"
              "then run `lq paper` again (or `latexmk -pdf paper.tex` in paper/).")
        return generated
    path = _latexmk(paper_dir)
    print(f"\npaper: {path}")
    return path
