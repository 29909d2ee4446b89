"""What a finished (or interrupted) run turns into: rows.parquet with metrics, figures/, and report.md.

``lq report RUN_DIR`` and ``lq figures RUN_DIR`` call these on an existing run; experiments call ``finish_run``.
The report's table has one row per method over its rank-0 outputs (a beam's answer, the first sample, the mode of
the reference length), each number with a 95% bootstrap (corpus BLEU/chrF, means) or Wilson (rates) interval. Runs
of the conditional experiment (rows with ``attribute_holds``) add the share of outputs with the attribute to that
table and a section of their own (``analysis.conditional``); their classifier's held-out calibration table,
``calibration.parquet``, adds its numbers there and a figure.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from analysis import methods, stats
from analysis.conditional import satisfies
from analysis.frames import consolidate, load_run
from analysis.quality import signatures

FIGURES_DIR = "figures"
REPORT = "report.md"
TOY = "toy.parquet"
CALIBRATION = "calibration.parquet"


def summary_table(df: pd.DataFrame, *, n_boot: int = 1000) -> pd.DataFrame:
    """One row per method (per model and method when the run has several models) over rank-0 rows: value and CI
    columns for each metric, methods in table order (``analysis.methods.order``)."""
    top = df[df["rank"] == 0].copy()
    top["wall_s"] = top["wall_s"].astype(float)
    keys = ["model", "method"] if top["model"].nunique() > 1 else ["method"]
    parts = {
        "BLEU": stats.corpus_ci(top, "bleu", by=keys, n_boot=n_boot),
        "chrF": stats.corpus_ci(top, "chrf", by=keys, n_boot=n_boot),
        "logprob": stats.corpus_ci(top, "logprob", by=keys, n_boot=n_boot),
        "empty %": stats.rate_ci(top, "empty", by=keys),
        "degenerate %": stats.rate_ci(top, "degenerate", by=keys),
        **({"A holds %": stats.rate_ci(top.assign(attribute_holds=satisfies(top)), "attribute_holds", by=keys)}
           if "attribute_holds" in top.columns else {}),
        "search error %": stats.rate_ci(top, "search_error", by=keys),
        "certified %": stats.rate_ci(top, "certified", by=keys),
    }
    order = {m: i for i, m in enumerate(methods.order(top))}
    out = top.groupby(keys, sort=False)["example_id"].nunique().rename("n").reset_index()
    out = out.sort_values(keys, key=lambda col: col.map(order) if col.name == "method" else col).reset_index(drop=True)
    for name, table in parts.items():
        scale = 100.0 if name.endswith("%") else 1.0
        value = table["value"]
        table = table[keys].assign(**{name: value * scale, f"{name} lo": table["lo"] * scale,
                                      f"{name} hi": table["hi"] * scale})
        out = out.merge(table, on=keys, how="left")
    seconds = top.groupby([*keys, "example_id"])["wall_s"].first().groupby(keys).mean().rename("sec/source")
    return out.merge(seconds.reset_index(), on=keys, how="left")


def _markdown(table: pd.DataFrame) -> str:
    metrics = [c for c in table.columns if f"{c} lo" in table.columns]
    keys = [k for k in ("model", "method") if k in table.columns]
    header = [*keys, "n", *metrics, "sec/source"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in table.to_dict("records"):
        cells = [str(r[k]) for k in keys] + [str(r["n"])]
        cells += [_ci(r[m], r[f"{m} lo"], r[f"{m} hi"]) for m in metrics]
        cells.append(_number(r["sec/source"], 2))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _number(value: float, digits: int = 1) -> str:
    return "–" if pd.isna(value) else f"{value:.{digits}f}"


def _ci(value: float, lo: float, hi: float, digits: int = 1) -> str:
    """"value [lo, hi]", or "–" where there is no value."""
    return "–" if pd.isna(value) else f"{value:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _rows(header: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table's lines."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def _contamination_section(df: pd.DataFrame) -> str:
    """For a contamination run: degenerate-mode shares against the closed form, and quality per setting."""
    if "noise" not in df.columns:
        return ""
    from analysis.contamination import mode_rates, quality_by_setting

    rates = mode_rates(df)
    lines = ["## Degenerate modes against the contamination rate", "",
             "Share of certified exact modes equal to the degenerate output D (Wilson 95% CI); the closed-form "
             "prediction from the clean control at the nominal rate, and with the probability of D the contaminated "
             "model learned; the model's mean probability of D.", "",
             "| noise | eps | D | measured % | predicted % | predicted (learned) % | mean P(D) | n | uncertified |",
             "|" + "---|" * 9]
    for r in rates.to_dict("records"):
        lines.append(f"| {r['noise']} | {r['epsilon']:g} | {r['degenerate_output']} | {100 * r['rate']:.1f} "
                     f"[{100 * r['lo']:.1f}, {100 * r['hi']:.1f}] | {100 * r['predicted']:.1f} | "
                     f"{100 * r['predicted_learned']:.1f} | {r['mean_p']:.3g} | {r['n']} | {r['uncertified']} |")
    quality = quality_by_setting(df)
    lines += ["", f"Beam output quality ({quality['beam'].iloc[0]}) and reference perplexity per setting:", "",
              "| noise | eps | BLEU | chrF | perplexity |", "|---|---|---|---|---|"]
    for r in quality.to_dict("records"):
        lines.append(f"| {r['noise']} | {r['epsilon']:g} | {r['bleu']:.1f} [{r['bleu_lo']:.1f}, {r['bleu_hi']:.1f}]"
                     f" | {r['chrf']:.1f} [{r['chrf_lo']:.1f}, {r['chrf_hi']:.1f}] | {r['perplexity']:.2f} |")
    return "\n".join(lines) + "\n\n"


def _calibration_lines(calibration: pd.DataFrame) -> list[str]:
    from analysis.conditional import position_accuracy

    models = calibration.drop_duplicates("model").sort_values("model")
    buckets = position_accuracy(calibration)
    positions = [f"{f}" if f == last else f"{f}-{last}" for f, last in zip(buckets["first"], buckets["last"],
                                                                         strict=True)]
    return ["", "Attribute classifier on held-out sources (expected calibration error over 10 probability bins; "
            "accuracy of q >= 0.5 by prefix position t, against always predicting the majority label there):", "",
            *_rows(["model", "A", "ECE", "held-out accuracy %"],
                   [[str(r["model"]), str(r["attribute"]), f"{r['ece']:.3f}", _number(100 * r["held_out_accuracy"])]
                    for r in models.to_dict("records")]),
            "", *_rows(["model", "t", "prefixes", "accuracy %", "majority %", "mean q"],
                       [[str(r["model"]), t, str(r["n"]), _number(100 * r["accuracy"]), _number(100 * r["majority"]),
                         f"{r['mean_q']:.2f}"] for t, r in zip(positions, buckets.to_dict("records"), strict=True)])]


def _conditional_section(df: pd.DataFrame, run_dir: Path) -> str:
    """For a conditional run: conditional beam search against its baselines, its likelihood cost, pairwise win
    rates and, with ``calibration.parquet``, the classifier's calibration."""
    if "attribute_holds" not in df.columns:
        return ""
    from analysis.conditional import largest_beam_sizes, likelihood_cost, method_summary, win_rates

    summary = method_summary(df)
    attributes = ", ".join(f"`{a}`" for a in sorted(df["attribute"].dropna().unique())) if "attribute" in df else ""
    rates = ("attribute_holds", "degenerate", "empty")
    lines = ["## Conditional beam search", "",
             f"Attribute A: {attributes or 'unnamed'}. Rank-0 outputs per method (95% CIs in brackets): mean "
             "log-likelihood (nats), outputs with A, degenerate and empty outputs (%, Wilson; a search that returned "
             "nothing counts as lacking A), corpus BLEU and chrF (bootstrap), seconds per source, and total search "
             "time over plain beam's at the same k on the same sources (bootstrap).", "",
             *_rows(["model", "method", "n", "no output", "certified", "logprob", "A holds %", "degenerate %",
                     "empty %", "BLEU", "chrF", "sec/source", "time vs beam"],
                    [[str(r["model"]), str(r["method"]), str(r["n"]), str(r["no_output"]),
                      "–" if pd.isna(r["certified"]) else str(r["certified"]),
                      _ci(r["logprob"], r["logprob_lo"], r["logprob_hi"]),
                      *(_ci(100 * r[c], 100 * r[f"{c}_lo"], 100 * r[f"{c}_hi"]) for c in rates),
                      _ci(r["bleu"], r["bleu_lo"], r["bleu_hi"]), _ci(r["chrf"], r["chrf_lo"], r["chrf_hi"]),
                      _number(r["wall_s"], 2), _ci(r["time_vs_beam"], r["time_vs_beam_lo"], r["time_vs_beam_hi"], 2)]
                     for r in summary.to_dict("records")]),
             "", "Likelihood cost of conditioning: mean paired difference in log-likelihood (nats), conditional beam "
             "minus plain beam at the same k, over the sources where both returned an output:", "",
             *_rows(["model", "k", "Δ logprob", "n"],
                    [[str(r["model"]), str(r["beam_size"]), _ci(r["delta_logprob"], r["lo"], r["hi"], 2), str(r["n"])]
                     for r in likelihood_cost(df).to_dict("records")])]
    for model, k in largest_beam_sizes(df).items():
        wins = 100 * win_rates(df, model=model, beam_size=k)
        lines += ["", f"Win rates of `{model}` at k={k} (% of sources where the row's output has A and is likelier "
                  "than the column's, or the column's lacks A; ties count for neither):", "",
                  *_rows(["", *wins.columns], [[method, *(_number(v, 0) for v in wins.loc[method])]
                                               for method in wins.index])]
    if (run_dir / CALIBRATION).is_file():
        lines += _calibration_lines(pd.read_parquet(run_dir / CALIBRATION))
    return "\n".join(lines) + "\n\n"


def write_report(run_dir: Path | str, df: pd.DataFrame | None = None) -> Path:
    run_dir = Path(run_dir)
    df = load_run(run_dir) if df is None else df
    config = json.loads((run_dir / "config.json").read_text())
    table = summary_table(df)
    table.to_csv(run_dir / "summary.csv", index=False)
    figures = sorted((run_dir / FIGURES_DIR).glob("*.png")) if (run_dir / FIGURES_DIR).is_dir() else []
    sigs = "\n".join(f"- {k}: `{v}`" for k, v in signatures().items())
    text = f"""# Run {config['run_id']}

Model(s) `{"`, `".join(sorted(df['model'].unique()))}`, data `{"`, `".join(sorted(df['dataset'].unique()))}`,
{df['example_id'].nunique()} sources, {len(df)} rows. Config: `{json.dumps(config['config'])}`

## Methods (rank-0 outputs; 95% CIs in brackets)

BLEU and chrF are corpus scores (bootstrap over sources); logprob is the mean natural-log probability of the
output (nats, EOS included); rates carry Wilson intervals. A search error is a rank-0 output less likely than the
certified exact mode of its source (sources without a certified mode are left out); "certified %" counts exact
searches that finished within their budget.

{_markdown(table)}

{_contamination_section(df)}{_conditional_section(df, run_dir)}sacrebleu signatures:
{sigs}

## Figures

{chr(10).join(f"![{p.stem}]({FIGURES_DIR}/{p.name})" for p in figures) or "(none rendered yet: `lq figures`)"}
"""
    path = run_dir / REPORT
    path.write_text(text)
    return path


def render_figures(run_dir: Path | str, df: pd.DataFrame | None = None, out: Path | None = None) -> list[Path]:
    """Every figure the run's rows support, plus the critical-eps figure when the run holds the toy check and the
    classifier calibration figure when it holds a calibration table, into ``out`` (default ``run_dir/figures``)."""
    from figures import calibration, critical_epsilon, style
    from figures.render import render

    run_dir = Path(run_dir)
    out = out or run_dir / FIGURES_DIR
    paths = render(load_run(run_dir) if df is None else df, out)
    if (run_dir / TOY).is_file():
        paths += style.save(critical_epsilon.plot(pd.read_parquet(run_dir / TOY)), out / "critical_epsilon")
    if (run_dir / CALIBRATION).is_file():
        paths += style.save(calibration.plot(pd.read_parquet(run_dir / CALIBRATION)), out / "calibration")
    return paths


def finish_run(run_dir: Path) -> Path:
    """Consolidate rows, render figures and write report.md; prints where they are. Returns ``run_dir``."""
    consolidate(run_dir)
    df = load_run(run_dir)
    render_figures(run_dir, df)
    report = write_report(run_dir, df)
    print(report.read_text().split("## Figures")[0])
    print(f"run directory: {run_dir} (rows.parquet, figures/, {REPORT})")
    return run_dir
