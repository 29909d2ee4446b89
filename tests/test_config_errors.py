"""Bad config values, wrong types and unknown keys get one-line messages from `lq` for every experiment, before any
model is loaded."""

import re
import subprocess
import sys

import pytest

from experiments import cli
from experiments.config import ConfigError, check

BAD_VALUES = {
    "modes": ("n=0", "bad modes config: n must be >= 1"),
    "contamination": ("epsilons=[1.5]", "bad contamination config: epsilons must be in [0, 1)"),
    "conditional": ("max_seconds=0", "bad conditional config: max_seconds must be > 0"),
    "demo": ("max_len=0", "bad demo config: max_len must be >= 1"),
}


@pytest.mark.parametrize("experiment", sorted(BAD_VALUES))
def test_each_experiment_rejects_bad_values_unknown_keys_and_wrong_types(experiment, tmp_path):
    setting, message = BAD_VALUES[experiment]
    cases = [(setting, message), ("no_such_key=1", f"unknown config key(s) for {experiment}: no_such_key"),
             ("seed=[1]" if experiment != "demo" else "max_len=2.5", "must be int"),
             ("device=3", "device must be str")]
    for override, expected in cases:
        with pytest.raises(SystemExit, match=rf"^lq: error: .*{re.escape(expected)}"):
            cli.main(["run", experiment, "--set", override, "--out", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()


def test_train_rejects_bad_keys_and_types():
    with pytest.raises(SystemExit, match="lq: error: unknown config key.*for train_mt: layer"):
        cli.main(["train", "mt", "--set", "layer=2"])
    with pytest.raises(SystemExit, match="lq: error: bad train_mt config: layers must be int, got 'two'"):
        cli.main(["train", "mt", "--set", "layers=two"])
    with pytest.raises(SystemExit, match="lq: error: --set expects key=value"):
        cli.main(["run", "--set", "n"])


def test_a_missing_or_malformed_config_file_is_one_line(tmp_path):
    with pytest.raises(SystemExit, match=r"lq: error: cannot read the modes config .*nope.toml: .*No such file"):
        cli.main(["run", "--config", str(tmp_path / "nope.toml")])
    (tmp_path / "bad.toml").write_text("n = [1,\n")
    with pytest.raises(SystemExit, match=r"lq: error: cannot read the modes config .*bad.toml: "):
        cli.main(["run", "--config", str(tmp_path / "bad.toml")])


def test_the_message_is_one_line_without_a_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "experiments.cli", "run", "modes", "--set", "n=-1", "--out",
                           str(tmp_path / "run")], capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "lq: error: bad modes config: n must be >= 1 (--debug shows the traceback)"]


def test_check_names_every_failed_condition():
    check("x", {"a must hold": True})
    with pytest.raises(ConfigError, match=r"^bad x config: b must hold; c must hold$") as err:
        check("x", {"a must hold": True, "b must hold": False, "c must hold": False})
    assert isinstance(err.value, ValueError)


def test_threads_is_how_a_run_executes_not_part_of_its_config(tmp_path, capsys):
    for bad in ("threads=0", "threads=1.5", "threads=true"):
        with pytest.raises(SystemExit, match=r"^lq: error: threads must be a positive integer"):
            cli.main(["run", "modes", "--set", bad, "--out", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()
    with pytest.raises(SystemExit):
        cli.main(["run", "modes", "--threads", "0"])
    assert "--threads: must be a positive integer, got '0'" in capsys.readouterr().err


def test_a_training_configs_threads_is_its_own():
    from experiments.config import load_config
    from experiments.train_mt import TrainMTConfig
    from experiments.train_nar import TrainNARConfig

    assert load_config(TrainNARConfig, "train_nar", overrides={"threads": 1}).threads == 1
    assert load_config(TrainMTConfig, "train_mt", overrides={"threads": 1}).threads == 1


def test_overrides_read_python_literals_and_toml_booleans():
    from experiments.config import parse_override

    assert parse_override("n=3") == ("n", 3)
    assert parse_override("lowercase=true") == ("lowercase", True) == parse_override("lowercase=True")
    assert parse_override("lowercase=false") == ("lowercase", False)
    assert parse_override("model=gemma3-270m") == ("model", "gemma3-270m")
    assert parse_override("tasks=['a', 'b']") == ("tasks", ["a", "b"])
