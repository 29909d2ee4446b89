"""Run directories under abuse: concurrent runs, torn files, failed starts, bad --limit and --out, a full disk, a
broken model; `lq` answers each with one line, `lq --debug` with the traceback."""

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM

from analysis.frames import read_rows
from experiments import cli, demo
from experiments.rundir import RunDir, RunDirBusyError
from models.errors import ConfigError
from tests.test_experiments import config, tiny_model_dir  # noqa: F401

KEY = ("example_id", "method", "rank")


def keys(run: Path) -> list[tuple]:
    rows = [json.loads(line) for line in (run / "rows.jsonl").read_text().splitlines()]
    return sorted(tuple(r[k] for k in KEY) for r in rows)


def test_a_second_run_into_a_locked_directory_is_refused_with_its_holder(tiny_model_dir, tmp_path):  # noqa: F811
    with RunDir(tmp_path / "run", {"a": 1}, ["first"]):
        with pytest.raises(RunDirBusyError, match=rf"being written by pid {os.getpid()} on .* since .*UTC"):
            demo.main(config(tiny_model_dir), tmp_path / "run")
        with pytest.raises(SystemExit, match="lq: error: .* is being written by pid"):
            cli.main(["run", "demo", "--set", f"model={tiny_model_dir}", "--out", str(tmp_path / "run")])
    run = demo.main(config(tiny_model_dir), tmp_path / "run")
    assert not (run / ".lock").exists() and len(keys(run)) == len(set(keys(run)))


def test_the_lock_holds_across_processes(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from experiments.rundir import RunDir\n"
        f"with RunDir({str(tmp_path / 'run')!r}, {{}}, []):\n"
        "    print('locked', flush=True); time.sleep(30)")], stdout=subprocess.PIPE, text=True,
        cwd=Path(__file__).parents[1])
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirBusyError, match=f"pid {holder.pid}"), RunDir(tmp_path / "run", {}, []):
            pass
    finally:
        holder.kill()
        holder.wait()
    with RunDir(tmp_path / "run", {}, []):
        pass


def test_a_last_line_without_its_newline_is_redone_not_appended_to(tiny_model_dir, tmp_path):  # noqa: F811
    cfg = config(tiny_model_dir)
    full = keys(demo.main(cfg, tmp_path / "full"))
    run = tmp_path / "cut"
    demo.main(cfg, run)
    lines = (run / "rows.jsonl").read_text().splitlines(keepends=True)
    (run / "rows.jsonl").write_text("".join(lines[:-1]) + lines[-1].rstrip("\n"))
    assert keys(demo.main(cfg, run)) == full


def test_a_report_counts_complete_units_only(tmp_path):
    rows = [{"unit": u, "unit_rows": 2, "run_id": "r", "signature": "{}", "model": "m", "dataset": "d",
             "example_id": u, "source": "s", "reference": None, "method": "beam2", "family": "beam", "params": "{}",
             "rank": rank, "text": "t", "token_ids": [1], "n_tokens": 1, "finished": True, "logprob": -1.0,
             "score": -1.0, "certified": None, "nodes": 1, "forward_calls": 1, "wall_s": 0.1, "beam_size": 2}
            for u in ("a", "b") for rank in range(2)]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))
    assert read_rows(tmp_path)["example_id"].tolist() == ["a", "a"]


def test_a_failed_start_leaves_nothing_and_does_not_lock_its_out(tiny_model_dir, tmp_path, monkeypatch):  # noqa: F811
    out = tmp_path / "run"
    with pytest.raises(SystemExit, match="lq: error: .*no-such-model"):
        cli.main(["run", "demo", "--set", "model=no-such-model", "--out", str(out)])
    assert not out.exists()
    out.mkdir()
    with pytest.raises(SystemExit, match="lq: error: .*no-such-model"):
        cli.main(["run", "demo", "--set", "model=no-such-model", "--out", str(out)])
    assert not (out / "config.json").exists()
    cli.main(["run", "demo", "--set", f"model={tiny_model_dir}", "--set", "prompts=['the cat']", "--out", str(out)])
    assert (out / "rows.parquet").is_file()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="lq: error: unknown corpus 'nosuch'"):
        cli.main(["run", "--set", "corpus=nosuch"])
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("limit", ["-1", "0", "two"])
def test_limit_must_be_positive(limit, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["run", "--limit", limit])
    assert exit_.value.code == 2 and "must be a positive integer" in capsys.readouterr().err


def test_an_out_that_cannot_be_made_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit, match=r"lq: error: cannot create the run directory .*file/run: Not a directory"):
        cli.main(["run", "--out", str(tmp_path / "file" / "run")])


def test_a_full_disk_is_one_line_and_the_run_resumes(tiny_model_dir, tmp_path, monkeypatch):  # noqa: F811
    cfg = config(tiny_model_dir)
    full = keys(demo.main(cfg, tmp_path / "full"))
    real_write, calls = os.write, []

    def write(fd, data):
        calls.append(fd)
        if len(calls) == 3:
            real_write(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    args = ["run", "demo", "--set", f"model={tiny_model_dir}", "--set", "prompts=['the cat', 'cat sat on', 'on the']",
            "--set", "max_len=4", "--set", "max_seconds=30.0", "--set", "beam_sizes=[1, 3]", "--out"]
    with pytest.raises(SystemExit, match="lq: error: .*No space left on device"):
        cli.main([*args, str(tmp_path / "run")])
    monkeypatch.setattr(os, "write", real_write)
    assert keys(demo.main(cfg, tmp_path / "run")) == full

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pd.DataFrame, "to_parquet", no_space)
    with pytest.raises(OSError, match="No space"):
        demo.main(cfg, tmp_path / "run")
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_a_model_with_nan_weights_is_one_line(tiny_model_dir, tmp_path):  # noqa: F811
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    broken = tmp_path / "nan-model"
    model.save_pretrained(broken)
    for f in tiny_model_dir.glob("*token*"):
        (broken / f.name).write_bytes(f.read_bytes())
    with pytest.raises(SystemExit, match="lq: error: .*(NaN|finite)"):
        cli.main(["run", "demo", "--set", f"model={broken}", "--out", str(tmp_path / "run")])


def test_debug_shows_the_traceback_and_the_run_directory_is_printed_once(tiny_model_dir, tmp_path,  # noqa: F811
                                                                         capsys):
    with pytest.raises(ConfigError, match="n must be >= 1"):
        cli.main(["--debug", "run", "--set", "n=0"])
    cli.main(["run", "demo", "--set", f"model={tiny_model_dir}", "--set", "prompts=['the cat']", "--out",
              str(tmp_path / "run")])
    assert capsys.readouterr().out.count(f"run directory: {tmp_path / 'run'}") == 1


def test_figures_say_why_none_applies(tmp_path, capsys):
    rows = [{"run_id": "r", "signature": "{}", "model": "m", "dataset": "d", "example_id": "a", "source": "s",
             "reference": None, "method": "greedy", "family": "greedy", "params": "{}", "rank": 0, "text": "t",
             "token_ids": [1], "n_tokens": 1, "finished": True, "logprob": -1.0, "score": -1.0, "certified": None,
             "nodes": 1, "forward_calls": 1, "wall_s": 0.1}]
    (tmp_path / "rows.jsonl").write_text(json.dumps(rows[0]) + "\n")
    with pytest.raises(SystemExit, match="lq: error: no figure applies"):
        cli.main(["figures", str(tmp_path)])
    assert "skipping figure beam_curse: the table lacks the column(s) ['beam_size']" in capsys.readouterr().out
