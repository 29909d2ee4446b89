"""The conditional experiment's analysis, figures and report section: win rates, time ratios and the likelihood
cost against hand-computed cases, the summary on a realistic consolidated run of two models (one with references,
one without), every figure rendered, and the report section written."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from analysis.conditional import (
    largest_beam_sizes,
    likelihood_cost,
    method_summary,
    position_accuracy,
    win_rates,
)
from analysis.frames import ROWS_JSONL, load_run
from experiments.report import CALIBRATION, render_figures, summary_table, write_report
from figures import calibration, conditional, conditional_winrate, render, style

matplotlib.use("Agg")

VOCAB = [f"w{i}" for i in range(60)]
BEAMS = (2, 8)
MODELS = {"mt": ("toy-mt", True), "chat": ("toy-chat", False)}
N_SOURCES = 12
N_BOOT = 200


def _row(model: str, example: dict, family: str, k: int | None, words: list[int] | None, logprob: float | None,
         holds: bool | None, wall_s: float, **extra: object) -> dict:
    method = f"{family}{k}" if k is not None else family
    return {
        "run_id": "run0", "signature": {"model": model, "method": method}, "model": model,
        "dataset": MODELS[model][0], "example_id": example["id"], "source": example["source"],
        "reference": example["reference"], "method": method, "params": {"beam_size": k}, "rank": 0,
        "text": None if words is None else " ".join(VOCAB[w] for w in words),
        "token_ids": words or [], "n_tokens": None if words is None else len(words),
        "finished": None if words is None else True, "logprob": logprob, "score": logprob,
        "certified": extra.pop("certified", None), "nodes": 10, "forward_calls": 10, "wall_s": wall_s,
        "family": family, "beam_size": k, "attribute": "not_degenerate", "attribute_holds": holds,
        "classifier_calls": extra.pop("classifier_calls", None), "classifier_rows": extra.pop("classifier_rows", None),
        **extra,
    }


def _source_rows(model: str, i: int, rng: np.random.Generator) -> list[dict]:
    """One source's rows: plain beam finds the empty output more often at k = 8, the non-empty beam sometimes a
    repetition loop, the filtered beam once nothing, conditional beam always an output with A slightly less likely
    than beam's, the exact mode is often empty and the exact conditional mode is the reference."""
    ref = [int(w) for w in rng.integers(len(VOCAB), size=int(rng.integers(4, 9)))]
    src = [int(w) for w in rng.integers(len(VOCAB), size=len(ref) + 1)]
    ex = {"id": f"{model}-{i}", "source": " ".join(VOCAB[w] for w in src),
          "reference": " ".join(VOCAB[w] for w in ref) if MODELS[model][1] else None}

    def lp(words: list[int]) -> float:
        subs = sum(a != b for a, b in zip(words, ref, strict=False))
        return -0.5 * (len(words) + 1) - 1.5 * subs - 0.4 * abs(len(words) - len(ref))

    def noisy(n_subs: int) -> list[int]:
        words = list(ref)
        for j in rng.choice(len(words), size=n_subs, replace=False):
            words[j] = int(rng.integers(len(VOCAB)))
        return words

    empty_lp = -2.0 - rng.uniform(0, 2)
    loop = [ref[0]] * 12
    rows = [_row(model, ex, "exact", None, [], empty_lp, False, 2.0, certified=i % 4 != 1),
            _row(model, ex, "exact_conditional", None, ref, lp(ref), True, 3.0, certified=i % 5 != 2)]
    families = ["beam", "beam_nonempty", "beam_filtered", "conditional_beam"]
    if model == "mt":
        families += ["beam_min_len", "beam_truncated"]
    for k in BEAMS:
        for family in families:
            words: list[int] | None = noisy(max(0, 3 - int(math.log2(k))))
            if family == "beam" and (i % 3 == 0 or (k == 8 and i % 2 == 0)):
                words = []
            elif family == "beam_nonempty" and i % 4 == 0:
                words = loop
            elif family == "beam_filtered" and i == 3:
                words = None
            elif family == "conditional_beam":
                words = noisy(1 + int(k == 2))
            holds = None if words is None else bool(words) and words != loop
            extra = {"classifier_calls": 5 * k, "classifier_rows": 40 * k} if family == "conditional_beam" else {}
            wall = 0.01 * k * (3 if family == "conditional_beam" else 1)
            rows.append(_row(model, ex, family, k, words, None if words is None else lp(words), holds, wall, **extra))
    return rows


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A consolidated conditional run of two models, with config.json and calibration.parquet."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("conditional")
    with open(path / ROWS_JSONL, "w") as f:
        for model in MODELS:
            for i in range(N_SOURCES):
                for row in _source_rows(model, i, rng):
                    f.write(json.dumps(row) + "\n")
    (path / "config.json").write_text(json.dumps({"run_id": "run0", "config": {"beam_sizes": list(BEAMS)}}))
    _calibration_table().to_parquet(path / CALIBRATION, index=False)
    return path


@pytest.fixture(scope="module")
def table(run_dir: Path) -> pd.DataFrame:
    return load_run(run_dir)


def _calibration_table() -> pd.DataFrame:
    rows = []
    for model, (ece, accuracy) in {"mt": (0.04, 0.81), "chat": (0.09, 0.74)}.items():
        common = {"model": model, "attribute": "not_degenerate", "ece": ece, "held_out_accuracy": accuracy}
        for b in range(10):
            q = (b + 0.5) / 10
            rows.append(common | {"table": "reliability", "bin": b, "lo": b / 10, "hi": (b + 1) / 10,
                                  "n": 0 if b == 4 else 20 + 10 * b, "mean_q": np.nan if b == 4 else q,
                                  "positive_rate": np.nan if b == 4 else min(1.0, q + 0.05)})
        for t in range(13):
            rows.append(common | {"table": "by_position", "position": t, "n": 100 - 5 * t, "accuracy": 0.6 + 0.02 * t,
                                  "mean_q": 0.7, "positive_rate": 0.7 - 0.01 * t, "loss": 0.5})
    return pd.DataFrame(rows)


def _hand(rows: list[tuple[str, str, int | None, float | None, bool | None, float]]) -> pd.DataFrame:
    """A minimal frame from (source, family, k, logprob, attribute holds, wall seconds) for model "m"."""
    return pd.DataFrame([{"model": "m", "example_id": ex, "family": family, "beam_size": k,
                          "method": f"{family}{k}" if k is not None else family, "rank": 0, "logprob": lp,
                          "attribute_holds": holds, "wall_s": wall} for ex, family, k, lp, holds, wall in rows])


def test_win_rates_by_hand() -> None:
    df = _hand([
        ("a", "beam", 2, -5.0, False, 1), ("a", "conditional_beam", 2, -7.0, True, 1),
        ("a", "exact", None, -2.0, False, 1), ("a", "exact_conditional", None, -6.0, True, 1),
        ("b", "beam", 2, -4.0, True, 1), ("b", "conditional_beam", 2, -4.5, True, 1),
        ("b", "exact", None, -4.0, True, 1), ("b", "exact_conditional", None, -4.0, True, 1),
        ("c", "beam", 2, -3.0, True, 1), ("c", "conditional_beam", 2, -3.0, True, 1),
        ("c", "exact", None, -1.0, False, 1), ("c", "exact_conditional", None, -3.0, True, 1),
        # only beam searched d: it counts for no pair; another beam size is not in the table
        ("d", "beam", 2, -1.0, True, 1), ("a", "beam", 8, -9.0, True, 1),
    ])
    wins = win_rates(df, model="m", beam_size=2)
    order = ["beam2", "conditional_beam2", "exact", "exact_conditional"]
    assert list(wins.index) == order and list(wins.columns) == order
    assert np.isnan(np.diag(wins.to_numpy())).all()
    third = 1 / 3
    assert wins.loc["conditional_beam2", "beam2"] == pytest.approx(third)  # a: beam lacks A; c: a tie
    assert wins.loc["beam2", "conditional_beam2"] == pytest.approx(third)  # b: -4 beats -4.5
    assert wins.loc["exact_conditional", "conditional_beam2"] == pytest.approx(2 / 3)
    assert wins.loc["conditional_beam2", "exact_conditional"] == 0
    assert wins.loc["exact_conditional", "exact"] == pytest.approx(2 / 3)  # a, c: the exact mode lacks A; b: tie
    assert wins.loc["exact", "exact_conditional"] == 0
    assert wins.loc["beam2", "exact"] == pytest.approx(third)
    ties = 1 - wins.loc["beam2", "conditional_beam2"] - wins.loc["conditional_beam2", "beam2"]
    assert ties == pytest.approx(third)
    with pytest.raises(ValueError, match=r"no rows at beam size 5; its beam sizes are \[2, 8\]"):
        win_rates(df, model="m", beam_size=5)
    with pytest.raises(ValueError, match="no rows of model 'x'"):
        win_rates(df, model="x", beam_size=2)


def test_time_vs_beam_is_the_ratio_of_total_search_times() -> None:
    df = _hand([(ex, "beam", 2, -1.0, True, b) for ex, b in zip("abc", (1.0, 2.0, 3.0), strict=True)]
               + [(ex, "conditional_beam", 2, -1.0, True, c) for ex, c in zip("abc", (2.0, 2.0, 8.0), strict=True)]
               + [("a", "conditional_beam", 8, -1.0, True, 5.0), ("a", "exact", None, -1.0, True, 9.0)])
    df = df.assign(n_tokens=3, certified=None, degenerate=False, empty=False, bleu_stats=None, chrf_stats=None)
    summary = method_summary(df, n_boot=N_BOOT).set_index("method")
    assert (summary.loc["beam2", ["time_vs_beam", "time_vs_beam_lo", "time_vs_beam_hi"]] == 1.0).all()
    assert summary.loc["conditional_beam2", "time_vs_beam"] == pytest.approx(12 / 6)
    lo, hi = summary.loc["conditional_beam2", ["time_vs_beam_lo", "time_vs_beam_hi"]]
    assert lo <= 2 <= hi and lo < hi
    # no plain beam at k = 8, and exact search has no beam size
    assert summary[["time_vs_beam"]].loc[["conditional_beam8", "exact"]].isna().all().all()
    assert summary.loc["conditional_beam2", "wall_s"] == pytest.approx(4.0)


def test_likelihood_cost_is_the_mean_paired_difference() -> None:
    df = _hand([(ex, "beam", 2, b, True, 1) for ex, b in zip("abcd", (-3.0, -4.0, -5.0, -2.0), strict=True)]
               + [(ex, "conditional_beam", 2, c, True, 1)
                  for ex, c in zip("abcd", (-4.0, -4.0, -8.0, None), strict=True)])
    cost = likelihood_cost(df, n_boot=N_BOOT)
    assert list(cost.columns) == ["model", "beam_size", "delta_logprob", "lo", "hi", "n"]
    (row,) = cost.to_dict("records")
    # d: conditional beam returned nothing, so only a, b, c pair up: (-1 + 0 - 3) / 3
    assert (row["model"], row["beam_size"], row["n"]) == ("m", 2, 3)
    assert row["delta_logprob"] == pytest.approx(-4 / 3)
    assert row["lo"] <= row["delta_logprob"] <= row["hi"] <= 0


def test_method_summary_on_a_consolidated_run(table: pd.DataFrame) -> None:
    summary = method_summary(table, n_boot=N_BOOT)
    per_model = {m: set(g["method"]) for m, g in summary.groupby("model")}
    assert len(per_model["mt"]) == 6 * len(BEAMS) + 2 and len(per_model["chat"]) == 4 * len(BEAMS) + 2
    assert (summary["n"] == N_SOURCES).all()
    mt = summary[summary["model"] == "mt"]
    assert list(mt["method"][:6]) == ["beam2", "beam8", "beam_nonempty2", "beam_nonempty8", "beam_min_len2",
                                      "beam_min_len8"]
    for name in ("logprob", "length", "attribute_holds", "degenerate", "empty", "bleu", "chrf", "time_vs_beam"):
        values = summary[[name, f"{name}_lo", f"{name}_hi"]].dropna()
        assert len(values), name
        assert (values[f"{name}_lo"] <= values[name] + 1e-12).all(), name
        assert (values[name] <= values[f"{name}_hi"] + 1e-12).all(), name
    s = summary.set_index(["model", "method"])
    assert s.loc[("mt", "conditional_beam8"), "attribute_holds"] == 1.0
    assert s.loc[("mt", "beam8"), "attribute_holds"] < s.loc[("mt", "beam2"), "attribute_holds"] < 1
    assert s.loc[("mt", "beam_filtered2"), "no_output"] == 1
    # no output: the filtered beam's failure counts as lacking A
    assert s.loc[("mt", "beam_filtered2"), "attribute_holds"] == pytest.approx((N_SOURCES - 1) / N_SOURCES)
    assert s.loc[("mt", "conditional_beam2"), "time_vs_beam"] == pytest.approx(3.0)
    assert s.loc[("mt", "exact"), "certified"] == sum(i % 4 != 1 for i in range(N_SOURCES))
    assert pd.isna(s.loc[("mt", "beam2"), "certified"])
    assert s.loc[("chat", "beam2"), ["bleu", "chrf"]].isna().all()
    assert s.loc[("mt", "beam2"), ["bleu", "chrf"]].notna().all()
    assert largest_beam_sizes(table) == {"chat": 8, "mt": 8}


def test_method_summary_says_what_is_missing(table: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['attribute_holds'\]"):
        method_summary(table.drop(columns="attribute_holds"))


def test_position_accuracy_pools_doubling_buckets() -> None:
    buckets = position_accuracy(_calibration_table())
    mt = buckets[buckets["model"] == "mt"]
    assert list(zip(mt["first"], mt["last"], strict=True)) == [(0, 0), (1, 2), (3, 6), (7, 12)]
    row = mt.iloc[1]  # positions 1 and 2, weights 95 and 90
    assert row["n"] == 185
    assert row["accuracy"] == pytest.approx((95 * 0.62 + 90 * 0.64) / 185)
    assert row["majority"] == pytest.approx((95 * 0.69 + 90 * 0.68) / 185)


@pytest.mark.parametrize("module", [conditional, conditional_winrate])
def test_result_figures_render_with_labelled_axes(table: pd.DataFrame, module: object, tmp_path: Path) -> None:
    assert module.REQUIRES.missing(table) is None  # type: ignore[attr-defined]
    fig = module.plot(table)  # type: ignore[attr-defined]
    assert fig.get_figwidth() == style.DOUBLE_COLUMN_IN
    plotted = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(plotted) == (3 * len(MODELS) if module is conditional else len(MODELS))
    for ax in plotted:
        assert ax.get_xlabel() and ax.get_ylabel()
        assert ax.lines or ax.collections or ax.images
    for path in style.save(fig, tmp_path / "fig"):
        assert path.stat().st_size > 0


def test_conditional_figure_panels(table: pd.DataFrame) -> None:
    fig = conditional.plot(table)
    grid = np.array(fig.axes).reshape(len(MODELS), 3)
    chat, mt = grid  # models by name
    assert [ax.get_ylabel() for ax in mt] == ["outputs lacking A (%)", "mean log-likelihood (nats)", "corpus BLEU"]
    assert chat[2].get_ylabel() == "mean output length (tokens)"
    assert all(ax.get_xscale() == "log" and ax.get_xlabel() == "beam size k" for ax in fig.axes)
    reference = [line.get_label() for line in mt[1].lines if line.get_linestyle() == "--"]
    certified = sum(i % 5 != 2 for i in range(N_SOURCES))
    assert reference == [f"exact conditional mode, mt (certified on {certified}/{N_SOURCES})"]
    assert fig.subfigs[1].get_suptitle() == f"mt, A = not_degenerate ({N_SOURCES} sources, 95% CI)"
    legend = [t.get_text() for t in fig.legends[0].texts]
    assert {"beam", "beam (non-empty)", "beam (filtered by A)", "conditional beam"} <= set(legend)


def test_winrate_figure_annotates_percentages(table: pd.DataFrame) -> None:
    fig = conditional_winrate.plot(table)
    ax = fig.axes[0]  # chat: 4 families at k = 8 and 2 exact searches
    assert len(ax.get_yticklabels()) == 6 and ax.get_yticklabels()[0].get_text() == "beam k=8"
    wins = 100 * win_rates(table, model="chat", beam_size=8)
    assert {t.get_text() for t in ax.texts} == {f"{v:.0f}" for v in wins.stack().dropna()}


def test_calibration_figure_renders(tmp_path: Path) -> None:
    df = _calibration_table()
    assert calibration.REQUIRES.missing(df) is None
    fig = calibration.plot(df)
    assert len(fig.axes) == 4
    for ax in fig.axes:
        assert ax.get_xlabel() and ax.get_ylabel() and (ax.lines or ax.collections)
    assert fig.axes[0].get_title(loc="left") == "reliability: ECE 0.090"  # chat, the first model by name
    assert all(p.stat().st_size > 0 for p in style.save(fig, tmp_path / "calibration"))
    assert "lacks the column" in (calibration.REQUIRES.missing(df.drop(columns="ece")) or "")


def test_render_skips_the_conditional_figures_without_their_columns(table: pd.DataFrame, tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    names = {"conditional", "conditional_winrate"}
    written = {p.stem for p in render(table, tmp_path / "all")}
    assert names <= written
    plain = table.drop(columns=["attribute_holds", "family"])
    with caplog.at_level(logging.INFO, logger="figures.render"):
        written = {p.stem for p in render(plain, tmp_path / "plain")}
    assert not names & written
    for name in names:
        assert f"skipping figure {name}: the table lacks the column(s)" in caplog.text
    two_datasets = pd.concat([table, table.assign(dataset="other")], ignore_index=True)
    assert "ran on several datasets" in (conditional.REQUIRES.missing(two_datasets) or "")


def test_report_has_the_conditional_section(run_dir: Path, table: pd.DataFrame, tmp_path: Path) -> None:
    text = write_report(run_dir, table).read_text()
    section = text.split("## Conditional beam search")[1]
    assert "| model | method | n | no output | certified | logprob | A holds % |" in section
    assert "| mt | conditional_beam8 | 12 | 0 | – |" in section
    assert "Likelihood cost of conditioning" in section and "| mt | 8 |" in section
    assert "Win rates of `mt` at k=8" in section and "|  | beam8 | beam_nonempty8 |" in section
    assert "| chat | not_degenerate | 0.090 | 74.0 |" in section
    assert "A holds %" in summary_table(table, n_boot=N_BOOT).columns
    figures = render_figures(run_dir, table, tmp_path / "figs")
    assert {"calibration.pdf", "calibration.png", "conditional.png"} <= {p.name for p in figures}


def test_report_without_attribute_columns_is_unchanged(run_dir: Path, table: pd.DataFrame, tmp_path: Path) -> None:
    plain = table.drop(columns=["attribute_holds"])
    other = tmp_path / "plain"
    other.mkdir()
    (other / "config.json").write_text((run_dir / "config.json").read_text())
    text = write_report(other, plain).read_text()
    assert "Conditional beam search" not in text and "A holds" not in text
    assert "A holds %" not in summary_table(plain, n_boot=N_BOOT).columns
