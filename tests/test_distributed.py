"""Scale-out on Ray (experiments.distributed) on a local Ray of 2 CPUs and a tiny Marian model: `lq run --ray local`
writes the rows of the in-process run, a killed actor's shards are redone by a replacement without losing or
duplicating a unit, and a driver killed mid-run resumes from its run directory."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from analysis.frames import load_run
from experiments import cli, distributed, modes
from experiments.config import ConfigError, load_config, run_options
from experiments.distributed import RayOptions
from experiments.rundir import RunDir
from models.errors import InputError
from tests.test_modes import config, tiny_mt_dir  # noqa: F401 (a fixture)

ROOT = Path(__file__).parents[1]
KEY = ["example_id", "method", "rank"]
LIMIT = 4


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray", reason="Ray is the optional extra [dist]: pip install -e '.[dist]'")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def overrides(model_dir) -> list[str]:
    """`lq run modes` on the tiny model with the settings of ``config`` (max_nodes, not time, bounds exact search,
    so every method is deterministic)."""
    sets = {"model": str(model_dir), "n": LIMIT, "max_source_tokens": 400, "beam_sizes": [1, 3], "max_len": 6,
            "max_nodes": 60, "length_offsets": [-1, 0, 1], "n_samples": 3}
    return [arg for k, v in sets.items() for arg in ("--set", f"{k}={v!r}" if not isinstance(v, str) else f"{k}={v}")]


def keyed(run_dir: Path):
    df = load_run(run_dir)
    assert not df.duplicated(KEY).any()
    return df[[*KEY, "text", "token_ids", "logprob", "signature"]].sort_values(KEY).reset_index(drop=True)


@pytest.fixture(scope="module")
def in_process(tiny_mt_dir, tmp_path_factory):  # noqa: F811
    return keyed(modes.main(config(tiny_mt_dir, n=LIMIT), tmp_path_factory.mktemp("in-process") / "run",
                            limit=LIMIT))


def assert_same_rows(got, want):
    assert len(got) == len(want)
    assert got[KEY + ["text", "signature"]].equals(want[KEY + ["text", "signature"]])
    assert [list(t) for t in got["token_ids"]] == [list(t) for t in want["token_ids"]]
    assert (got["logprob"].fillna(0) - want["logprob"].fillna(0)).abs().max() < 1e-5


def test_lq_run_on_local_ray_gives_the_rows_of_the_in_process_run(ray_session, tiny_mt_dir, in_process,  # noqa: F811
                                                                   tmp_path):
    run = tmp_path / "ray"
    cli.main(["run", "modes", *overrides(tiny_mt_dir), "--limit", str(LIMIT), "--ray", "local", "--ray-workers", "2",
              "--out", str(run)])
    got = keyed(run)
    assert got["example_id"].nunique() == LIMIT and got["method"].nunique() == 7
    assert_same_rows(got, in_process)
    assert (run / "report.md").is_file()


def test_a_killed_actor_loses_and_duplicates_nothing(ray_session, tiny_mt_dir, in_process, monkeypatch,  # noqa: F811
                                                      tmp_path):
    actors = []
    spawn, append = distributed._Pool.spawn, RunDir.append

    def spawn_and_record(pool):
        spawn(pool)
        actors.append(list(pool.loading.values())[-1])

    def append_then_kill(run, unit, rows):
        append(run, unit, rows)
        if len(run.done) == 3:  # mid-run: the first actor is killed with shards in flight
            ray_session.kill(actors[0], no_restart=True)

    monkeypatch.setattr(distributed._Pool, "spawn", spawn_and_record)
    monkeypatch.setattr(RunDir, "append", append_then_kill)
    run = modes.main(config(tiny_mt_dir, n=LIMIT), tmp_path / "run", limit=LIMIT,
                     ray=RayOptions("local", workers=2))
    assert len(actors) == 3, "the killed actor was replaced"
    lines = (run / "rows.jsonl").read_text().splitlines()
    assert len(lines) == len(in_process)
    assert_same_rows(keyed(run), in_process)


def test_a_killed_driver_resumes_from_its_run_directory(ray_session, tiny_mt_dir, in_process, tmp_path):  # noqa: F811
    run = tmp_path / "run"
    # a driver of its own Ray, on 1 worker, killed (with its Ray) once a few units are in
    driver = subprocess.Popen(
        [sys.executable, "-m", "experiments.cli", "run", "modes", *overrides(tiny_mt_dir), "--limit", str(LIMIT),
         "--ray", "local", "--ray-workers", "1", "--out", str(run)], cwd=ROOT, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    rows = run / "rows.jsonl"
    deadline = time.monotonic() + 120
    while (not rows.is_file() or len(rows.read_text().splitlines()) < 5) and driver.poll() is None:
        assert time.monotonic() < deadline, "the driver wrote no rows in 120 s"
        time.sleep(0.05)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    assert driver.returncode == -signal.SIGKILL, driver.stderr.read().decode() if driver.stderr else ""
    written = len(rows.read_text().splitlines())
    assert 5 <= written < len(in_process)
    # resumed here, in-process: how a run executes is not part of its config
    resumed = modes.main(config(tiny_mt_dir, n=LIMIT), run, limit=LIMIT)
    assert_same_rows(keyed(resumed), in_process)


def test_an_error_in_a_worker_is_one_line_from_lq(ray_session, tmp_path):
    with pytest.raises(SystemExit, match=r"^lq: error: .*no-such-model[^\n]*$"):
        cli.main(["run", "--set", "model=no-such-model", "--ray", "local", "--out", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()


def test_ray_options_come_from_the_config_and_are_not_part_of_it(tmp_path):
    path = tmp_path / "modes.toml"
    path.write_text((ROOT / "experiments/configs/modes.toml").read_text() + '\nray = "auto"\nray_threads = 2\n')
    assert RayOptions.from_keys(run_options("modes", path)) == RayOptions("auto", threads=2)
    assert load_config(modes.ModesConfig, "modes", path) == load_config(modes.ModesConfig, "modes")
    assert RayOptions.from_keys(run_options("modes")) is None
    with pytest.raises(ConfigError, match=r"ray_\* config: threads must be int"):
        RayOptions.from_keys({"ray": "local", "ray_threads": "two"})
    with pytest.raises(ConfigError, match=r"ray_\* config: workers must be >= 1"):
        RayOptions.from_keys({"ray": "local", "ray_workers": 0})


def test_without_ray_installed_ray_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(InputError, match=r"\[dist\]"):
        distributed._ray()
