"""Figures: each renders from a realistic result table, labels its axes, and ``render`` writes PDF and PNG for the
figures a table supports and skips the others with a reason."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from analysis import methods
from analysis.frames import ROWS_JSONL, load_run
from figures import FIGURES, render, style

matplotlib.use("Agg")

VOCAB = [f"w{i}" for i in range(60)]
BEAMS = (1, 2, 4, 8, 16)


def _row(example: dict, family: str, rank: int, words: list[int], logprob: float, **extra: object) -> dict:
    method = methods.label(family, {"beam_size": extra.get("beam_size")})
    return {
        "run_id": "run0", "signature": {"model": "toy", "method": method}, "model": "toy", "dataset": "toy-mt",
        "example_id": example["id"], "source": example["source"], "reference": example["reference"],
        "method": method, "family": family, "params": {}, "rank": rank, "text": " ".join(VOCAB[w] for w in words),
        "token_ids": words, "n_tokens": len(words), "finished": True, "logprob": logprob, "score": logprob,
        "certified": extra.pop("certified", None), "nodes": 10, "forward_calls": 10, "wall_s": 0.01,
        "source_tokens": example["source_tokens"], "reference_tokens": example["reference_tokens"],
        "target_length": extra.pop("target_length", None),
        "beam_size": extra.pop("beam_size", None), **extra,
    }


def _noisy(ref: list[int], n_words: int, n_subs: int, rng: np.random.Generator) -> list[int]:
    """The reference cut or padded (by repeating it) to ``n_words``, with ``n_subs`` words replaced."""
    words = [ref[i % len(ref)] for i in range(n_words)]
    for i in rng.choice(n_words, size=min(n_subs, n_words), replace=False) if n_words else []:
        words[i] = int(rng.integers(len(VOCAB)))
    return words


def _example_rows(i: int, rng: np.random.Generator) -> list[dict]:
    """One source's rows, built so the known pathologies appear: the empty output is the mode more often for
    longer sources, wider beams find it more often, and likelier samples are closer to the reference."""
    n_src = int(rng.integers(3, 26))
    src = [int(w) for w in rng.integers(len(VOCAB), size=n_src)]
    ref = [int(w) for w in rng.integers(len(VOCAB), size=max(2, n_src + int(rng.integers(-2, 3))))]
    ex = {"id": f"ex{i}", "source": " ".join(VOCAB[w] for w in src), "reference": " ".join(VOCAB[w] for w in ref),
          "source_tokens": int(round(1.3 * n_src)), "reference_tokens": len(ref)}

    def lp(words: list[int]) -> float:
        subs = sum(a != b for a, b in zip(words, ref, strict=False))
        return -0.5 * (len(words) + 1) - 1.5 * subs - 0.4 * abs(len(words) - len(ref))

    best = list(ref)
    empty_lp = -9.0 + rng.normal(0, 1.5)
    mode, mode_lp = ([], empty_lp) if empty_lp > lp(best) else (best, lp(best))
    certified = i % 11 != 5
    rows = [_row(ex, "exact", 0, mode if certified else best, mode_lp if certified else lp(best),
                 certified=certified),
            _row(ex, "exact_nonempty", 0, best, lp(best), certified=True)]
    greedy = _noisy(ref, len(ref), 3, rng)
    rows.append(_row(ex, "greedy", 0, greedy, lp(greedy)))
    finds_empty_at = 2 ** int(rng.integers(1, 6))
    for k in BEAMS:
        out = [] if (not mode and k >= finds_empty_at) else _noisy(ref, len(ref), max(0, 3 - int(np.log2(k))), rng)
        runner_up = _noisy(ref, len(ref), 4, rng)
        rows += [_row(ex, "beam", 0, out, lp(out), beam_size=k),
                 _row(ex, "beam", 1, runner_up, min(lp(out), lp(runner_up)) - 0.1, beam_size=k)]
    for s in range(8):
        out = _noisy(ref, max(1, len(ref) + int(rng.integers(-3, 4))), int(rng.integers(0, 6)), rng)
        rows.append(_row(ex, "sample", s, out, lp(out) + rng.normal(0, 1.0)))
    # as ``lq run modes`` searches them: reference length + offsets, nearest first; the longest may run out of budget
    lengths = sorted({max(len(ref) + o, 0) for o in (-4, -2, 0, 2, 4)}, key=lambda n: (abs(n - len(ref)), n))
    for rank, t in enumerate(lengths):
        out = _noisy(ref, t, int(t > len(ref)), rng)
        rows.append(_row(ex, "length_conditional", rank, out, lp(out), target_length=t,
                         certified=t < len(ref) + 4 or i % 3 != 0))
    return rows


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """A consolidated run (rows.jsonl -> metrics -> parquet -> frame), typed as ``lq figures`` will see it."""
    rng = np.random.default_rng(0)
    run_dir = tmp_path_factory.mktemp("run")
    with open(run_dir / ROWS_JSONL, "w") as f:
        for i in range(30):
            for row in _example_rows(i, rng):
                f.write(json.dumps(row) + "\n")
    return load_run(run_dir)


# contamination figures: tests/test_contamination.py; conditional ones: tests/test_conditional_analysis.py
RUN_FIGURES = sorted(n for n in FIGURES if not n.startswith(("contamination", "conditional")))


@pytest.mark.parametrize("name", RUN_FIGURES)
def test_every_figure_renders_with_labelled_axes_and_a_legend(table: pd.DataFrame, name: str) -> None:
    module = FIGURES[name]
    assert module.REQUIRES.missing(table) is None
    fig = module.plot(table)
    assert fig.get_figwidth() in (style.SINGLE_COLUMN_IN, style.DOUBLE_COLUMN_IN)
    for ax in fig.axes:
        assert ax.get_xlabel() and ax.get_ylabel(), f"{name}: unlabelled axis"
        assert ax.lines or ax.collections, f"{name}: empty panel"
    assert fig.legends or any(ax.get_legend() for ax in fig.axes), f"{name}: no legend"


def test_beam_curse_shows_the_exact_modes_and_a_log_beam_axis(table: pd.DataFrame) -> None:
    fig = FIGURES["beam_curse"].plot(table)
    assert len(fig.axes) == 3
    for ax in fig.axes:
        assert ax.get_xscale() == "log" and ax.get_xlabel() == "beam size k"
        dashed = [line.get_label() for line in ax.lines if line.get_linestyle() == "--"]
        assert dashed == ["exact mode", "exact non-empty mode"]
    assert "uncertified excluded" in fig.legends[0].texts[0].get_text()


def test_render_writes_pdf_and_png_at_300_dpi(table: pd.DataFrame, tmp_path: Path) -> None:
    paths = render(table, tmp_path / "figs")
    assert sorted(p.name for p in paths) == sorted(f"{n}.{ext}" for n in RUN_FIGURES for ext in ("pdf", "png"))
    for path in paths:
        assert path.read_bytes()[:4] == (b"%PDF" if path.suffix == ".pdf" else b"\x89PNG")
    with Image.open(tmp_path / "figs" / "beam_curse.png") as png:
        assert png.info["dpi"] == pytest.approx((300, 300), abs=0.01)


def test_render_skips_figures_whose_rows_are_missing(table: pd.DataFrame, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    # greedy and beam answers only: no exact search (so no search errors either), too few candidates per source
    searches_only = table[table["method"].isin(["greedy", "beam4"]) & (table["rank"] == 0)].assign(search_error=np.nan)
    with caplog.at_level(logging.INFO, logger="figures.render"):
        paths = render(searches_only, tmp_path)
    assert sorted(p.name for p in paths) == ["beam_curse.pdf", "beam_curse.png"]
    skipped = {n for n in FIGURES if f"skipping figure {n}:" in caplog.text}
    assert skipped == set(FIGURES) - {"beam_curse"}
    samples_only = render(table[table["method"] == "sample"], tmp_path / "samples")
    assert sorted(p.name for p in samples_only) == ["likelihood_quality.pdf", "likelihood_quality.png"]
    assert render(table.iloc[:0], tmp_path / "none") == []


def test_plot_says_why_it_cannot_draw(table: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="length_conditional rows"):
        FIGURES["length_conditional"].plot(table[table["method"] != "length_conditional"])
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['chrf'\]"):
        FIGURES["likelihood_quality"].plot(table.drop(columns="chrf"))


def test_figures_refuse_to_pool_two_models(table: pd.DataFrame) -> None:
    two = pd.concat([table, table.assign(model="other")], ignore_index=True)
    for module in (FIGURES[n] for n in RUN_FIGURES):
        assert "2 (model, dataset) pairs" in (module.REQUIRES.missing(two) or "")


def test_empty_vs_length_without_a_logistic_fit(table: pd.DataFrame) -> None:
    """All certified modes empty: no finite maximum-likelihood fit, the binned rates still draw."""
    all_empty = table.assign(empty=table["empty"].where(table["method"] != "exact", True))
    fig = FIGURES["empty_vs_length"].plot(all_empty)
    assert "no logistic fit" in fig.legends[0].get_title().get_text()


def test_method_colours_are_consistent_and_ordered() -> None:
    assert style.method_color("beam", 4) == style.method_color("beam", 4)
    families = ["greedy", "beam", "conditional_beam", "exact", "exact_nonempty", "length_conditional", "sample"]
    assert len({style.method_color(f, 4) for f in families}) == len(families)
    # beam shades darken with k: the sequential palette encodes width
    luminance = [np.mean(matplotlib.colors.to_rgb(style.method_color("beam", k))) for k in (1, 4, 16, 64)]
    assert luminance == sorted(luminance, reverse=True)
    runs = pd.DataFrame({"family": ["sample", "beam", "exact", "beam", "greedy", "zzz", "conditional_beam"],
                         "beam_size": [None, 10, None, 2, None, None, 2]})
    runs["method"] = [methods.label(f, {"beam_size": k}) if f in methods.FAMILIES else f
                      for f, k in zip(runs["family"], runs["beam_size"], strict=True)]
    assert methods.order(runs) == ["greedy", "beam2", "beam10", "conditional_beam2", "exact", "sample", "zzz"]
    assert methods.display("beam", 5) == "beam k=5" and methods.display("exact_nonempty") == "exact non-empty"


def test_save_keeps_a_dotted_stem(tmp_path: Path) -> None:
    with style.paper():
        fig, _ = style.new_figure()
    assert [p.name for p in style.save(fig, tmp_path / "sub" / "fig.v2")] == ["fig.v2.pdf", "fig.v2.png"]


def test_figures_never_import_torch() -> None:
    code = "import sys, figures.render; assert 'torch' not in sys.modules, 'figures imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True)
