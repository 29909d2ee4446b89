"""Methods as data (analysis.methods), the one row builder and the upgrade of old result tables (analysis.frames)."""

import json
from pathlib import Path

import pandas as pd
import pytest

from analysis import methods
from analysis.frames import COLUMNS, Found, load_run, result_rows, upgrade
from decoding import TabularLM, beam_search, exact_search

LM_EOS = 0
EXAMPLE = {"example_id": "ex0", "source": "a b", "reference": "b a", "max_len": 3, "source_tokens": 2,
           "reference_tokens": 2}


def _decode(ids):
    return " " + " ".join(str(i) for i in ids if i != LM_EOS) + " "


def _rows(res, family, settings, **kw):
    found = [Found(h, res, {}) for h in res.hypotheses or [None]]
    return result_rows(found, family=family, settings=settings, example=EXAMPLE, model="toy", dataset="toy/test",
                       signature={"model": "toy"}, decode=_decode, **kw)


@pytest.fixture
def lm():
    return TabularLM({(1,): 0.5, (2, 1): 0.3, (): 0.2}, vocab_size=3, eos_id=0)


def test_labels_displays_and_order_come_from_family_and_settings():
    assert methods.label("beam", {"beam_size": 5}) == "beam5"
    assert methods.label("conditional_beam", {"beam_size": 200.0, "candidates": 50}) == "conditional_beam200"
    assert methods.label("exact", {"budget_s": 8.0}) == "exact"
    assert methods.display("beam_nonempty", 5) == "beam (non-empty) k=5"
    assert methods.display("exact", None) == "exact" and methods.display("nar?", 3) == "nar?"
    assert methods.families(sized=True)[0] == "beam" and "exact" not in methods.families(sized=True)
    assert set(methods.families(ranked=False)) == {"sample", "length_conditional"}
    assert "greedy" not in methods.families(certifies=True)
    with pytest.raises(ValueError, match="unknown method family 'beem'"):
        methods.label("beem", {})
    assert set(methods.SETTINGS) <= set(COLUMNS)


def test_one_row_builder_records_family_settings_and_semantics(lm):
    beams = _rows(beam_search(lm, [], beam_size=2, max_len=3), "beam", {"beam_size": 2})
    assert [r["rank"] for r in beams] == [0, 1] and {r["method"] for r in beams} == {"beam2"}
    first = beams[0]
    assert (first["family"], first["beam_size"], first["certified"], first["text"]) == ("beam", 2, None, "1")
    assert first["params"] == {"beam_size": 2, "max_len": 3}
    assert first["signature"] == {"model": "toy", "method": "beam2", "params": {"beam_size": 2}}
    exact = _rows(exact_search(lm, [], max_len=3), "exact", {"budget_s": 1.0})
    assert exact[0]["certified"] is True and exact[0]["budget_s"] == 1.0 and "seed_logprob" in exact[0]


def test_the_row_builder_refuses_undeclared_settings_and_columns(lm):
    res = beam_search(lm, [], beam_size=1, max_len=3)
    with pytest.raises(ValueError, match=r"undeclared method settings \['beam_width'\]"):
        _rows(res, "beam", {"beam_width": 1})
    with pytest.raises(ValueError, match=r"undeclared result columns \['colour'\]"):
        _rows(res, "beam", {"beam_size": 1}, columns=lambda found: {"colour": "red"})


def test_tables_written_before_methods_were_data_are_upgraded(tmp_path: Path, lm):
    """The rows of the old modes and conditional experiments: the family from params or the beam size, the settings
    from params; the result is what the row builder writes today."""
    common = {"run_id": "r", "signature": "{}", "model": "toy", "dataset": "toy/test", "example_id": "ex0",
              "source": "a", "reference": "b", "rank": 0, "text": "b", "token_ids": [2], "n_tokens": 1,
              "finished": True, "logprob": -1.0, "score": -1.0, "nodes": 1, "forward_calls": 1, "wall_s": 0.1}
    old = [
        common | {"method": "beam5", "params": {"beam_size": 5, "max_len": 9}, "beam_size": 5, "certified": None},
        common | {"method": "exact_nonempty", "beam_size": None, "certified": True,
                  "params": {"constraints": ["MinLength(1)"], "max_len": 9, "max_nodes": None, "max_seconds": 8.0}},
        common | {"method": "sample", "params": {"max_len": 9, "n": 20, "seed": 0, "temperature": 1.0},
                  "beam_size": None, "certified": None},
        common | {"method": "length_conditional", "beam_size": None, "certified": True,
                  "params": {"length_offsets": [-2, 0], "max_len": 9, "max_seconds": 8.0, "target_length": 1}},
    ]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    df = load_run(tmp_path).set_index("method")
    assert df["family"].to_dict() == {"beam5": "beam", "exact_nonempty": "exact_nonempty", "sample": "sample",
                                      "length_conditional": "length_conditional"}
    assert df.loc["exact_nonempty", "constraints"] == "MinLength(1)" and df.loc["exact_nonempty", "budget_s"] == 8.0
    assert (df.loc["sample", "n_samples"], df.loc["sample", "temperature"]) == (20, 1.0)
    assert json.loads(df.loc["length_conditional", "length_offsets"]) == [-2, 0]
    assert (df["max_len"] == 9).all() and str(df["budget_s"].dtype) == "Float64"
    conditional = pd.DataFrame([common | {"method": "beam_filtered5", "beam_size": 5, "certified": None,
                                          "params": '{"beam_size": 5, "family": "beam_filtered", "max_len": 9}'}])
    assert upgrade(conditional)["family"].tolist() == ["beam_filtered"]
    assert upgrade(df) is df


def test_committed_results_are_in_the_current_schema():
    from experiments.paper import EXPERIMENTS

    for run in sorted(Path("paper/results") / name for name in EXPERIMENTS):  # the search runs the paper reads
        df = pd.read_parquet(run / "rows.parquet")
        assert "family" in df.columns and df["family"].isin(list(methods.FAMILIES)).all(), run
        labels = [methods.label(f, {"beam_size": k}) for f, k in zip(df["family"], df["beam_size"], strict=True)]
        assert labels == df["method"].tolist(), run


def test_per_row_columns_of_a_search_must_be_declared_too(lm):
    res = beam_search(lm, [], beam_size=1, max_len=3)
    with pytest.raises(ValueError, match=r"undeclared result columns \['target_len'\]"):
        result_rows([Found(res.best, res, {"target_len": 1})], family="beam", settings={"beam_size": 1},
                    example=EXAMPLE, model="toy", dataset="toy/test", signature={}, decode=_decode)
