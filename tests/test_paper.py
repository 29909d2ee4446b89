"""``lq paper`` on a committed run (config.json and rows.parquet only): generated figures, tables and numbers
agree with the run's summary table, absent experiments become visible placeholders, paper.tex quotes only numbers
that are generated, and a missing latexmk ends with the install command, not an error."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.frames import ROWS_JSONL, consolidate, load_run
from experiments import cli, paper
from experiments.config import CONFIGS
from experiments.report import summary_table
from figures import FIGURES
from models.errors import InputError
from tests.test_figures import _example_rows

REPO_PAPER = Path(__file__).resolve().parent.parent / "paper"
# the synthetic run's beams renamed to the widths of the shipped modes config, so the paper's keys all exist
BEAM_WIDTHS = {1: 1, 2: 2, 4: 5, 8: 10, 16: 50}
TRAINING = {"config": {"vocab_size": 8000, "d_model": 256, "layers": 3, "heads": 4, "ffn_dim": 1024,
                       "label_smoothing": 0.1}, "steps": 4000, "epochs": 11.2, "training_seconds": 5760.0,
            "final_eval": {"dev_loss": 3.1, "dev_bleu": 21.34, "dev_chrf": 45.6}}
MACRO = re.compile(r"\\lqdef\{([^}]*)\}\{(.*)\}$")


def _renamed(row: dict) -> dict:
    k = row["beam_size"]
    if k is None:
        return row
    method = f"beam{BEAM_WIDTHS[k]}"
    return row | {"method": method, "beam_size": BEAM_WIDTHS[k], "signature": row["signature"] | {"method": method}}


@pytest.fixture(scope="module")
def committed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory as committed: config.json (the shipped modes config) and rows.parquet, no rows.jsonl."""
    run_dir = tmp_path_factory.mktemp("modes")
    config = tomllib.loads((CONFIGS / "modes.toml").read_text()) | {"limit": None}
    (run_dir / "config.json").write_text(json.dumps({"run_id": "run0", "config": config}))
    rng = np.random.default_rng(0)
    with open(run_dir / ROWS_JSONL, "w") as f:
        for i in range(30):
            f.writelines(json.dumps(_renamed(row)) + "\n" for row in _example_rows(i, rng))
    consolidate(run_dir)
    (run_dir / ROWS_JSONL).unlink()
    return run_dir


def _paper_copy(root: Path, run: Path | None = None) -> Path:
    """paper/ without its generated files under ``root``, with ``run`` committed as results/modes."""
    out = root / "paper"
    shutil.copytree(REPO_PAPER, out, ignore=shutil.ignore_patterns("generated", "results", "paper.pdf", "*.aux",
                                                                   "*.log", "*.fls", "*.fdb_latexmk"))
    if run is not None:
        shutil.copytree(run, out / "results" / "modes")
    return out


def _macros(path: Path) -> dict[str, str]:
    found = [MACRO.match(line) for line in path.read_text().splitlines()]
    return {m.group(1): m.group(2) for m in found if m}


def _uncommented(path: Path) -> str:
    return re.sub(r"(?<!\\)%.*", "", path.read_text())


def _number(tex: str) -> float:
    return float(tex.replace(r"\ensuremath{-}", "-"))


@pytest.fixture(scope="module")
def built(committed_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """paper/ after ``build(pdf=False)`` with the modes run committed; the shipped model's training.json faked."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(paper, "_training_meta", lambda model: TRAINING if model == "toy" else None)
        paper_dir = _paper_copy(tmp_path_factory.mktemp("built"), committed_run)
        assert paper.build(paper_dir=paper_dir, pdf=False) == paper_dir / paper.GENERATED
    return paper_dir


def test_figures_of_a_committed_run_are_regenerated(built: Path) -> None:
    assert not (built / "results" / "modes" / ROWS_JSONL).exists()  # load_run worked from rows.parquet alone
    for name in (n for n in FIGURES if not n.startswith(("contamination", "conditional"))):  # their runs only
        for ext in ("pdf", "png"):
            assert (built / "generated" / "modes" / f"{name}.{ext}").read_bytes()[:4] in (b"%PDF", b"\x89PNG")


def test_summary_table_is_a_caption_free_booktabs_tabular_with_a_row_per_method(built: Path,
                                                                              committed_run: Path) -> None:
    text = (built / "generated" / "modes_summary.tex").read_text()
    assert text.startswith(r"\begin{tabular}") and text.rstrip().endswith(r"\end{tabular}")
    assert all(rule in text for rule in (r"\toprule", r"\midrule", r"\bottomrule"))
    assert r"\caption" not in text and r"\begin{table" not in text
    body = text.split(r"\midrule")[1].split(r"\bottomrule")[0].strip().splitlines()
    table = summary_table(load_run(committed_run), n_boot=paper.N_BOOT)
    assert [line.split(" & ")[0] for line in body] == ["greedy", *(f"beam k={k}" for k in BEAM_WIDTHS.values()),
                                                        "exact", "exact non-empty", "length-conditional", "sample"]
    beam5 = table.set_index("method").loc["beam5"]
    header = text.split(r"\toprule")[1].split(r"\\")[0].strip().split(" & ")
    cells = dict(zip(header, next(line for line in body if line.startswith("beam k=5 &")).split(" & "), strict=True))
    assert cells["BLEU"] == f"{beam5['BLEU']:.1f} [{beam5['BLEU lo']:.1f}, {beam5['BLEU hi']:.1f}]"
    assert cells["empty \\%"].startswith(f"{beam5['empty %']:.1f} [")
    assert cells["certified \\%"] == "--"  # beam search certifies nothing


def test_numbers_match_the_summary_table(built: Path, committed_run: Path) -> None:
    macros = _macros(built / "generated" / paper.NUMBERS)
    table = summary_table(load_run(committed_run), n_boot=paper.N_BOOT)
    checked = 0
    for row in table.to_dict("records"):
        for column, slug in (("BLEU", "bleu"), ("chrF", "chrf"), ("logprob", "logprob"), ("empty %", "empty"),
                             ("search error %", "searcherror"), ("certified %", "certified")):
            for suffix, value in (("", row[column]), (".lo", row[f"{column} lo"]), (".hi", row[f"{column} hi"])):
                tex = macros[f"modes.{row['method']}.{slug}{suffix}"]
                if pd.isna(value):
                    assert tex == "--"
                else:
                    assert _number(tex) == pytest.approx(value, abs=0.05 + 1e-9)
                    checked += 1
        assert macros[f"modes.{row['method']}.n"] == str(row["n"])
    assert checked > 100
    assert macros["modes.sources"] == "30"
    assert macros["modes.config.max_seconds"] == "8" and macros["modes.config.beam_sizes"] == "1, 2, 5, 10, 50"
    assert macros["modes.training.devbleu"] == "21.3" and macros["modes.training.config.d_model"] == "256"
    assert macros["def.nboot"] == str(paper.N_BOOT) and macros["def.signature.bleu"].startswith(r"\texttt{nrefs:1|")
    assert 0 <= _number(macros["modes.certifiedmodes.empty"]) <= 100


def test_every_number_in_the_text_is_generated(built: Path) -> None:
    """With the modes run committed, every \\measured key about modes (and every definition) exists: no number in
    its sections is typed in or left undefined."""
    tex = _uncommented(built / "paper.tex")
    macros = _macros(built / "generated" / paper.NUMBERS)
    quoted = set(re.findall(r"\\measured\{([^}#]+)\}", tex))
    quoted |= {f"{k}{s}" for k in re.findall(r"\\measuredci\{([^}#]+)\}", tex) for s in ("", ".lo", ".hi")}
    assert {k.split(".")[0] for k in quoted} <= {"def", *paper.EXPERIMENTS, *paper.OWN_TABLES}
    assert sorted(k for k in quoted if k.split(".")[0] in ("def", "modes") and k not in macros) == []
    assert len(quoted) > 40


def test_paper_sources_are_consistent() -> None:
    """What a LaTeX run would catch without TeX installed: every citation has a bib entry, every generated figure
    and table exists in the toolkit, every reference has a label, and braces and environments balance."""
    body = _uncommented(REPO_PAPER / "paper.tex")
    bib_keys = set(re.findall(r"@\w+\{([^,]+),", (REPO_PAPER / "refs.bib").read_text()))
    cited = {k.strip() for group in re.findall(r"\\cite\w*(?:\[[^]]*\])?\{([^}]+)\}", body) for k in group.split(",")}
    assert cited and cited <= bib_keys
    # every run-table figure, the critical-eps figure drawn from a contamination run's toy check, the calibration
    # figure drawn from a conditional run's calibration table, and figures the own-table experiments draw
    drawn = {name for _, name in re.findall(r"\\genfigure\{(\w+)\}\{(\w+)\}", body)}
    own = {name for spec in paper.OWN_SUMMARIES.values() for name, _, _ in spec.figures}
    assert {*FIGURES, "critical_epsilon", "calibration"} <= drawn <= {*FIGURES, "critical_epsilon", "calibration", *own}
    tables = set(re.findall(r"\\gentable\{(\w+)\}", body))
    assert {"modes", "contamination", "conditional"} <= tables <= {*paper.EXPERIMENTS, *paper.OWN_TABLES}
    assert set(re.findall(r"\\ref\{([^}]+)\}", body)) <= set(re.findall(r"\\label\{([^}]+)\}", body))
    assert body.count("{") - body.count(r"\{") == body.count("}") - body.count(r"\}")
    assert sorted(re.findall(r"\\begin\{(\w+\*?)\}", body)) == sorted(re.findall(r"\\end\{(\w+\*?)\}", body))


def test_absent_experiments_get_placeholders(built: Path) -> None:
    generated = built / "generated"
    numbers = (generated / paper.NUMBERS).read_text()
    for experiment in ("contamination", "conditional"):
        assert paper.PLACEHOLDER in (generated / f"{experiment}_summary.tex").read_text()
        assert not (generated / experiment).exists()
        assert f"\\lqdef{{{experiment}." not in numbers
        assert f"% {experiment}: {paper.PLACEHOLDER}" in numbers


def test_no_results_at_all_still_generates_every_input_and_clears_stale_files(tmp_path: Path) -> None:
    paper_dir = _paper_copy(tmp_path)
    stale = paper_dir / "generated" / "modes" / "beam_curse.pdf"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"%PDF old")
    paper.build(paper_dir=paper_dir, pdf=False)
    assert not stale.exists()
    for experiment in paper.EXPERIMENTS:
        assert paper.PLACEHOLDER in (paper_dir / "generated" / f"{experiment}_summary.tex").read_text()
    assert set(_macros(paper_dir / "generated" / paper.NUMBERS)) == set(paper.definitions()["key"])


def test_the_committed_conditional_run_generates_its_table_numbers_and_figures(tmp_path: Path) -> None:
    """From paper/results/conditional as committed: a per-model table at the largest beam size, the calibration
    figure and every \\measured key of the conditional section."""
    paper_dir = _paper_copy(tmp_path)
    shutil.copytree(REPO_PAPER / "results" / "conditional", paper_dir / "results" / "conditional")
    paper.generate(paper_dir / "results", paper_dir)
    generated = paper_dir / "generated"
    table = (generated / "conditional_summary.tex").read_text()
    assert table.startswith("\\begin{tabular}") and "\\toprule" in table and "conditional beam k=200" in table
    assert "conditional beam k=20" in table and "beam k=50" not in table
    assert {p.stem for p in (generated / "conditional").glob("*.pdf")} == {"conditional", "conditional_winrate",
                                                                         "calibration"}
    macros = _macros(generated / paper.NUMBERS)
    tex = _uncommented(paper_dir / "paper.tex")
    quoted = set(re.findall(r"\\measured\{(conditional\.[^}#]+)\}", tex))
    quoted |= {f"{k}{s}" for k in re.findall(r"\\measuredci\{(conditional\.[^}#]+)\}", tex) for s in ("", ".lo", ".hi")}
    assert len(quoted) > 30 and sorted(quoted - set(macros)) == []
    assert 0 < _number(macros["conditional.bibledeenmarian.classifier.ece"]) < 0.1
    assert _number(macros["conditional.bibledeenmarian.conditional_beam200.degenerate"]) == 0


def test_the_committed_hso_perplexity_run_draws_its_figures_from_its_tables(tmp_path: Path) -> None:
    """paper/results/hso_perplexity as committed (figures/ is not): both figures are drawn from summary.csv and
    tuning.csv, and every \\measured key of the HSO section that names it exists."""
    paper_dir = _paper_copy(tmp_path)
    shutil.copytree(REPO_PAPER / "results" / "hso_perplexity", paper_dir / "results" / "hso_perplexity",
                    ignore=shutil.ignore_patterns("figures", "rows.jsonl"))
    paper.generate(paper_dir / "results", paper_dir)
    generated = paper_dir / "generated"
    assert {p.stem for p in (generated / "hso_perplexity").glob("*.pdf")} == {"hso_perplexity", "hso_steps"}
    assert "\\toprule" in (generated / "hso_perplexity_summary.tex").read_text()
    macros = _macros(generated / paper.NUMBERS)
    tex = _uncommented(paper_dir / "paper.tex")
    quoted = set(re.findall(r"\\measured\{(hso_perplexity\.[^}#]+)\}", tex))
    quoted |= {f"{k}{s}" for k in re.findall(r"\\measuredci\{(hso_perplexity\.[^}#]+)\}", tex)
               for s in ("", ".lo", ".hi")}
    assert len(quoted) > 10 and sorted(quoted - set(macros)) == []


def test_lq_paper_without_latexmk_prints_the_install_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    _paper_copy(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    cli.main(["paper"])
    out = capsys.readouterr().out
    assert paper.INSTALL_TEX in out and "generated sources" in out
    assert paper.INSTALL_TEX == ("apt-get install -y latexmk texlive-latex-recommended texlive-latex-extra "
                                 "texlive-fonts-recommended")
    cli.main(["paper", "--no-pdf", "--results", str(tmp_path / "elsewhere")])
    out = capsys.readouterr().out
    assert paper.INSTALL_TEX not in out and "elsewhere" in out
    monkeypatch.chdir(tmp_path / "paper")
    with pytest.raises(SystemExit, match="from the repository root"):
        cli.main(["paper"])


def test_latexmk_runs_in_paper_dir_and_a_failure_shows_the_log_tail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    paper_dir = _paper_copy(tmp_path)
    calls = []

    def latexmk(args: list[str], *, cwd: Path, **kwargs: object) -> subprocess.CompletedProcess:
        calls.append((args, cwd))
        if len(calls) == 1:
            (cwd / "paper.pdf").write_bytes(b"%PDF")
            return subprocess.CompletedProcess(args, 0, "", "")
        (cwd / "paper.log").write_text("\n".join(f"log line {i}" for i in range(100)) + "\n! Undefined control\n")
        return subprocess.CompletedProcess(args, 12, "", "")

    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(subprocess, "run", latexmk)
    assert paper.build(paper_dir=paper_dir) == paper_dir / "paper.pdf"
    assert calls[0] == (["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "paper.tex"], paper_dir)
    with pytest.raises(InputError, match="latexmk failed"):
        paper.build(paper_dir=paper_dir)
    out = capsys.readouterr().out
    assert "! Undefined control" in out and "log line 99" in out and "log line 10\n" not in out


@pytest.mark.parametrize(("value", "digits", "tex"), [
    (12.345, 1, "12.3"), (-3.26, 1, r"\ensuremath{-}3.3"), (float("nan"), 1, "--"), (None, 1, "--"),
    (7, 0, "7"), (0.0349, 2, "0.03"), (-1e-12, 1, "0.0")])
def test_tex_number(value: float | None, digits: int, tex: str) -> None:
    assert paper.tex_number(value, digits) == tex


def test_tex_escape() -> None:
    assert paper.tex_escape("bible-de-en/test_1 50% & $x^2$ #1 ~{a}\\") == (
        r"bible-de-en/test\_1 50\% \& \$x\textasciicircum{}2\$ \#1 \textasciitilde{}\{a\}\textbackslash{}")


def test_own_summaries_become_tables_and_numbers_with_intervals() -> None:
    table = pd.DataFrame([
        {"domain": "all", "method": "recurrent W=64", "ppl": 20.123, "ppl_lo": 19.0, "ppl_hi": 21.5,
         "delta_sliding": -0.0123, "delta_sliding_lo": -0.02, "delta_sliding_hi": -0.004, "delta_full": 0.05,
         "delta_full_lo": 0.04, "delta_full_hi": 0.06, "s_per_token": 0.0123, "state_mb": 2.9},
        {"domain": "all", "method": "full", "ppl": 18.0, "ppl_lo": 17.0, "ppl_hi": 19.0, "delta_sliding": np.nan,
         "delta_sliding_lo": np.nan, "delta_sliding_hi": np.nan, "delta_full": np.nan, "delta_full_lo": np.nan,
         "delta_full_hi": np.nan, "s_per_token": 0.01, "state_mb": 90.0}])
    table = pd.concat([table, table.iloc[:1].assign(domain="bible", ppl=30.0)], ignore_index=True).assign(pieces=16)
    latex, numbers = paper.own_summary("recurrence", table)
    assert r"\toprule" in latex and "20.12 [19.00, 21.50]" in latex and r"\ensuremath{-}0.012 [" in latex
    assert "recurrent W=64 & 16 &" in latex and "full & 16 & 18.00 [17.00, 19.00] & -- &" in latex
    assert "bible" not in latex  # the paper prints the pooled rows; every row has its numbers
    got = dict(zip(numbers["key"], numbers["tex"], strict=True))
    assert got["recurrence.bible.recurrentw64.ppl"] == "30.00"
    assert got["recurrence.all.recurrentw64.ppl"] == "20.12" and got["recurrence.all.recurrentw64.ppl.hi"] == "21.50"
    assert got["recurrence.all.full.dsliding"] == "--" and got["recurrence.all.full.statemb"] == "90.0"
    acc = pd.DataFrame([{"model": "m", "dataset": "d", "shots": 4, "method": "icl+cc", "accuracy": 0.5,
                         "accuracy_lo": 0.4, "accuracy_hi": 0.6, "macro_f1": 0.25, "macro_f1_lo": 0.2,
                         "macro_f1_hi": 0.3, "s_per_pred": 0.2}])
    _, numbers = paper.own_summary("hso_fewshot", acc)
    assert dict(zip(numbers["key"], numbers["tex"], strict=True))["hso_fewshot.m.d.4.iclcc.accuracy"] == "50.0"
    ppl = pd.DataFrame([{"model": "m", "domain": "bible", "method": "hso", "name": "hso lr=0.003 steps=3",
                         "ppl": 19.0, "ppl_lo": 18.0, "ppl_hi": 20.0, "delta_logppl": -0.07, "delta_lo": -0.08,
                         "delta_hi": -0.06, "s_per_token": 0.05, "state_mb": 84.0}])
    latex, numbers = paper.own_summary("hso_perplexity", ppl)
    assert "hso lr=0.003 steps=3 &" in latex  # the table prints the tuned setting, the keys name the method
    assert dict(zip(numbers["key"], numbers["tex"], strict=True))["hso_perplexity.m.bible.hso.ppl"] == "19.00"
