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


def summary_table(df: pd.DataFrame, *, n_boot: int = 1000) -> pd.DataFrame:
    """One row per method (rank-0 rows): value and CI columns for each metric, in the figures' method order."""
    from figures.style import method_order

    top = df[df["rank"] == 0].copy()
    top["wall_s"] = top["wall_s"].astype(float)
    parts = {
        "BLEU": stats.corpus_ci(top, "bleu", n_boot=n_boot),
        "chrF": stats.corpus_ci(top, "chrf", n_boot=n_boot),
        "logprob": stats.corpus_ci(top, "logprob", n_boot=n_boot),
        "empty %": stats.rate_ci(top, "empty"),
        "degenerate %": stats.rate_ci(top, "degenerate"),
        "search error %": stats.rate_ci(top, "search_error"),
        "certified %": stats.rate_ci(top, "certified"),
    }
    out = pd.DataFrame({"method": method_order(top["method"].unique())})
    out["n"] = out["method"].map(top.groupby("method")["example_id"].nunique())
    for name, table in parts.items():
        table = table.set_index("method")
        scale = 100.0 if name.endswith("%") else 1.0
        value = table["rate" if "rate" in table else "value"] * scale
        out[name] = out["method"].map(value)
        out[f"{name} lo"] = out["method"].map(table["lo"] * scale)
        out[f"{name} hi"] = out["method"].map(table["hi"] * scale)
    out["sec/source"] = out["method"].map(top.groupby(["method", "example_id"])["wall_s"].first()
                                          .groupby("method").mean())
    return out


def _markdown(table: pd.DataFrame) -> str:
    metrics = [c for c in table.columns if f"{c} lo" in table.columns]
    header = ["method", "n", *metrics, "sec/source"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in table.to_dict("records"):
        cells = [str(r["method"]), str(r["n"])]
        for m in metrics:
            v, lo, hi = r[m], r[f"{m} lo"], r[f"{m} hi"]
            cells.append("–" if pd.isna(v) else f"{v:.1f} [{lo:.1f}, {hi:.1f}]")
        cells.append("–" if pd.isna(r["sec/source"]) else f"{r['sec/source']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(run_dir: Path | str, df: pd.DataFrame | None = None) -> Path:
    run_dir = Path(run_dir)
    df = load_run(run_dir) if df is None else df
    config = json.loads((run_dir / "config.json").read_text())
    table = summary_table(df)
    table.to_csv(run_dir / "summary.csv", index=False)
    figures = sorted((run_dir / FIGURES_DIR).glob("*.png")) if (run_dir / FIGURES_DIR).is_dir() else []
    sigs = "\n".join(f"- {k}: `{v}`" for k, v in signatures().items())
    text = f"""# Run {config['run_id']}

Model `{df['model'].iloc[0]}`, data `{df['dataset'].iloc[0]}`, {df['example_id'].nunique()} sources,
{len(df)} rows. Config: `{json.dumps(config['config'])}`

## Methods (rank-0 outputs; 95% CIs in brackets)

BLEU and chrF are corpus scores (bootstrap over sources); logprob is the mean natural-log probability of the
output (nats, EOS included); rates carry Wilson intervals. A search error is a rank-0 output less likely than the
certified exact mode of its source (sources without a certified mode are left out); "certified %" counts exact
searches that finished within their budget.

{_markdown(table)}

sacrebleu signatures:
{sigs}

## Figures

{chr(10).join(f"![{p.stem}]({FIGURES_DIR}/{p.name})" for p in figures) or "(none rendered yet: `lq figures`)"}
"""
    path = run_dir / REPORT
    path.write_text(text)
    return path


def render_figures(run_dir: Path | str, df: pd.DataFrame | None = None) -> list[Path]:
    from figures.render import render

    run_dir = Path(run_dir)
    return render(load_run(run_dir) if df is None else df, run_dir / FIGURES_DIR)


def finish_run(run_dir: Path) -> Path:
    """Consolidate rows, render figures and write report.md; prints where they are. Returns ``run_dir``."""
    consolidate(run_dir)
    df = load_run(run_dir)
    render_figures(run_dir, df)
    report = write_report(run_dir, df)
    print(report.read_text().split("## Figures")[0])
    print(f"run directory: {run_dir} (rows.parquet, figures/, {REPORT})")
    return run_dir
