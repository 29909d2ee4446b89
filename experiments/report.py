"""What a finished (or interrupted) run turns into: rows.parquet with metrics, figures/, and report.md.

``lq report RUN_DIR`` and ``lq figures RUN_DIR`` call these on an existing run; experiments call ``finish_run``.
The report's table has one row per method over its rank-0 outputs (a beam's answer, the first sample, the mode of
the reference length), each number with a 95% bootstrap (corpus BLEU/chrF, means) or Wilson (rates) interval.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from analysis import stats
from analysis.frames import consolidate, load_run
from analysis.quality import signatures

FIGURES_DIR = "figures"
REPORT = "report.md"
TOY = "toy.parquet"


def summary_table(df: pd.DataFrame, *, n_boot: int = 1000) -> pd.DataFrame:
    """One row per method (per model and method when the run has several models) over rank-0 rows: value and CI
    columns for each metric, methods in the figures' order."""
    from figures.style import method_order

    top = df[df["rank"] == 0].copy()
    top["wall_s"] = top["wall_s"].astype(float)
    keys = ["model", "method"] if top["model"].nunique() > 1 else ["method"]
    parts = {
        "BLEU": stats.corpus_ci(top, "bleu", by=keys, n_boot=n_boot),
        "chrF": stats.corpus_ci(top, "chrf", by=keys, n_boot=n_boot),
        "logprob": stats.corpus_ci(top, "logprob", by=keys, n_boot=n_boot),
        "empty %": stats.rate_ci(top, "empty", by=keys),
        "degenerate %": stats.rate_ci(top, "degenerate", by=keys),
        "search error %": stats.rate_ci(top, "search_error", by=keys),
        "certified %": stats.rate_ci(top, "certified", by=keys),
    }
    order = {m: i for i, m in enumerate(method_order(top["method"].unique()))}
    out = top.groupby(keys, sort=False)["example_id"].nunique().rename("n").reset_index()
    out = out.sort_values(keys, key=lambda col: col.map(order) if col.name == "method" else col).reset_index(drop=True)
    for name, table in parts.items():
        scale = 100.0 if name.endswith("%") else 1.0
        value = table["rate" if "rate" in table else "value"]
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
        for m in metrics:
            v, lo, hi = r[m], r[f"{m} lo"], r[f"{m} hi"]
            cells.append("–" if pd.isna(v) else f"{v:.1f} [{lo:.1f}, {hi:.1f}]")
        cells.append("–" if pd.isna(r["sec/source"]) else f"{r['sec/source']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


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

{_contamination_section(df)}sacrebleu signatures:
{sigs}

## Figures

{chr(10).join(f"![{p.stem}]({FIGURES_DIR}/{p.name})" for p in figures) or "(none rendered yet: `lq figures`)"}
"""
    path = run_dir / REPORT
    path.write_text(text)
    return path


def render_figures(run_dir: Path | str, df: pd.DataFrame | None = None, out: Path | None = None) -> list[Path]:
    """Every figure the run's rows support, plus the critical-eps figure when the run holds the toy check, into
    ``out`` (default ``run_dir/figures``)."""
    from figures import critical_epsilon, style
    from figures.render import render

    run_dir = Path(run_dir)
    out = out or run_dir / FIGURES_DIR
    paths = render(load_run(run_dir) if df is None else df, out)
    if (run_dir / TOY).is_file():
        paths += style.save(critical_epsilon.plot(pd.read_parquet(run_dir / TOY)), out / "critical_epsilon")
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
