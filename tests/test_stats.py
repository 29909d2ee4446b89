"""analysis/stats.py: intervals cover and shrink, paired bootstrap p-values equal sacreBLEU's, correlations equal
scipy's, Wilson intervals equal the formula, logistic regression recovers known coefficients, bad input fails."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import sacrebleu
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.significance import PairedTest
from scipy import optimize, stats
from scipy.special import expit

from analysis.quality import add_quality
from analysis.stats import (
    binned_curve,
    bootstrap_ci,
    corpus_ci,
    logistic_fit,
    paired_bootstrap,
    rank_correlation,
    rate_ci,
)

TEXT = ("the council said on monday that new rules for rented flats would apply from next spring while critics "
        "warned that tenants in older buildings could face higher costs and longer waits")
WORDS = TEXT.split()


def _systems(n: int, drop: dict[str, float], seed: int = 0) -> tuple[list[str], dict[str, list[str]]]:
    """References and, per system, outputs that drop each reference word with the system's probability."""
    rng = np.random.default_rng(seed)
    refs = [" ".join(rng.choice(WORDS, rng.integers(6, 20))) for _ in range(n)]
    return refs, {name: [" ".join(w for w in ref.split() if rng.random() > p) for ref in refs]
                  for name, p in drop.items()}


def _table(refs: list[str], systems: dict[str, list[str]]) -> pd.DataFrame:
    return add_quality(pd.DataFrame([
        {"method": name, "example_id": f"{i:03d}", "rank": 0, "text": hyp, "reference": ref}
        for name, hyps in systems.items() for i, (hyp, ref) in enumerate(zip(hyps, refs, strict=True))]))


@pytest.fixture(scope="module")
def mt() -> tuple[list[str], dict[str, list[str]], pd.DataFrame]:
    # Close systems, so that some p-values are far from their floor of 1/1001.
    refs, systems = _systems(60, {"base": 0.25, "close": 0.27, "worse": 0.4})
    return refs, systems, _table(refs, systems)


# --- bootstrap_ci -------------------------------------------------------------------------------------------------

def _normal_sample(sizes: dict[str, int], seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame([{"method": m, "example_id": str(i), "y": rng.normal(3.0, 1.0)}
                         for m, n in sizes.items() for i in range(n)])


def test_bootstrap_ci_contains_the_estimate_and_shrinks_with_n():
    df = _normal_sample({"small": 50, "large": 800})
    out = bootstrap_ci(df, lambda g: g["y"].mean()).set_index("method")
    assert list(out.reset_index().columns) == ["method", "value", "lo", "hi", "n"]
    assert (out["lo"] <= out["value"]).all() and (out["value"] <= out["hi"]).all()
    assert out.loc["small", "n"] == 50 and out.loc["large", "n"] == 800
    width = out["hi"] - out["lo"]
    # The width falls like 1/sqrt(n): a factor 4 here; the normal interval 2 * 1.96 / sqrt(n) predicts it.
    assert width["large"] < width["small"] / 2.5
    assert width["large"] == pytest.approx(2 * 1.96 / math.sqrt(800), rel=0.15)


def test_bootstrap_ci_resamples_whole_units_and_is_deterministic():
    df = _normal_sample({"a": 30})
    twice = pd.concat([df, df], ignore_index=True)  # every unit has two identical rows
    out = bootstrap_ci(twice, lambda g: g["y"].mean(), by=None, seed=3)
    assert out["n"].tolist() == [30]
    # Resampling units keeps the two rows together, so the interval is the one-row-per-unit interval.
    once = bootstrap_ci(df, lambda g: g["y"].mean(), by=None, seed=3)
    assert out.to_numpy() == pytest.approx(once.to_numpy(), rel=1e-12)
    assert out.equals(bootstrap_ci(twice, lambda g: g["y"].mean(), by=None, seed=3))
    assert out["lo"].iloc[0] != bootstrap_ci(twice, lambda g: g["y"].mean(), by=None, seed=4)["lo"].iloc[0]


# --- corpus_ci ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("metric,corpus", [("bleu", sacrebleu.corpus_bleu), ("chrf", sacrebleu.corpus_chrf),
                                           ("ter", sacrebleu.corpus_ter)])
def test_corpus_ci_value_is_sacrebleus_corpus_score(mt, metric, corpus):
    refs, systems, df = mt
    extra = df.assign(rank=1, text="", **{f"{metric}_stats": df[f"{metric}_stats"]})  # rank 1 rows are ignored
    out = corpus_ci(pd.concat([df, extra], ignore_index=True), metric, n_boot=200).set_index("method")
    for name, hyps in systems.items():
        assert out.loc[name, "value"] == corpus(hyps, [refs]).score
        assert out.loc[name, "lo"] <= out.loc[name, "value"] <= out.loc[name, "hi"]
        assert out.loc[name, "n"] == len(refs)


def test_corpus_ci_of_a_group_without_references_is_nan(mt):
    _, _, df = mt
    no_refs = df.head(3).assign(method="chat", bleu_stats=None)
    out = corpus_ci(pd.concat([df, no_refs], ignore_index=True), "bleu", n_boot=50).set_index("method")
    assert out.loc["chat", "n"] == 0 and math.isnan(out.loc["chat", "value"])
    assert out.drop(index="chat")["value"].notna().all()


def test_corpus_ci_of_a_column_is_its_mean_and_matches_bootstrap_ci():
    df = _normal_sample({"a": 40, "b": 60}).assign(rank=0)
    expected = bootstrap_ci(df, lambda g: g["y"].mean(), n_boot=300)
    pd.testing.assert_frame_equal(corpus_ci(df, "y", n_boot=300), expected, rtol=1e-12)


def test_corpus_ci_with_a_denominator_is_the_ratio_of_sums_and_matches_bootstrap_ci():
    df = _normal_sample({"a": 40, "b": 60}).assign(rank=0)
    df = df.assign(y=df["y"].abs(), base=df["y"].abs() + 1.0)
    out = corpus_ci(df, "y", denominator="base", n_boot=300)
    expected = bootstrap_ci(df, lambda g: g["y"].sum() / g["base"].sum(), n_boot=300)
    pd.testing.assert_frame_equal(out, expected, rtol=1e-12)
    with pytest.raises(ValueError, match="denominator"):
        corpus_ci(df, "bleu", denominator="base")


def test_corpus_ci_counts_booleans_and_ignores_nan():
    df = pd.DataFrame({"method": "m", "example_id": list("abcde"), "rank": 0,
                       "flag": pd.Series([True, False, True, None, True], dtype=object)})
    out = corpus_ci(df, "flag", n_boot=50).iloc[0]
    assert out["value"] == 0.75 and out["n"] == 4


# --- paired_bootstrap ---------------------------------------------------------------------------------------------

def test_paired_bootstrap_equals_sacrebleu(mt, monkeypatch):
    monkeypatch.delenv("SACREBLEU_SEED", raising=False)  # sacreBLEU's default seed, 12345
    refs, systems, df = mt
    names = ["base", "close", "worse"]
    _, expected = PairedTest([(n, systems[n]) for n in names], {"BLEU": BLEU(), "chrF": CHRF()}, [refs],
                             test_type="bs", n_samples=1000)()
    shuffled = df.sample(frac=1.0, random_state=1)  # rows in any order: examples are taken by sorted id
    for metric, key in [("bleu", "BLEU"), ("chrf", "chrF2")]:
        out = paired_bootstrap(shuffled, metric, baseline="base").set_index("method")
        assert list(out.index) == ["close", "worse"]
        for i, name in enumerate(names[1:], start=1):
            assert out.loc[name, "p_value"] == expected[key][i].p_value
            assert out.loc[name, "value"] == expected[key][i].score
            assert out.loc[name, "baseline_value"] == expected[key][0].score
            assert out.loc[name, "delta"] == out.loc[name, "value"] - out.loc[name, "baseline_value"]
    # The close system must really exercise the count, not sit at the floor 1/1001.
    assert paired_bootstrap(df, "chrf", baseline="base").set_index("method").loc["close", "p_value"] > 0.01


def test_paired_bootstrap_uses_common_examples_and_any_column():
    df = _normal_sample({"a": 50, "b": 50}, seed=2).assign(rank=0)
    df.loc[df["method"] == "b", "y"] += 1.0
    out = paired_bootstrap(df[df["example_id"] != "7"].iloc[1:], "y", baseline="a", n_boot=200)
    row = out.iloc[0]
    common = sorted(set(df["example_id"]) - {"0", "7"})
    b = df[(df["method"] == "b") & df["example_id"].isin(common)]["y"].mean()
    assert list(out.columns) == ["method", "baseline", "value", "baseline_value", "delta", "p_value"]
    assert row["value"] == pytest.approx(b) and row["p_value"] == pytest.approx(1 / 201)


def test_paired_bootstrap_rejects_bad_input(mt):
    _, _, df = mt
    with pytest.raises(ValueError, match="baseline 'nope'"):
        paired_bootstrap(df, "bleu", baseline="nope")
    with pytest.raises(ValueError, match="one row per example"):
        paired_bootstrap(pd.concat([df, df]), "bleu", baseline="base", n_boot=10)


# --- rank_correlation ---------------------------------------------------------------------------------------------

def test_rank_correlation_on_one_source_equals_scipy():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=12), rng.normal(size=12)
    x[3] = x[4]  # a tie, where Kendall's tau-b differs from tau-a
    df = pd.DataFrame({"example_id": "s", "text": [f"out {i}" for i in range(12)], "logprob": x, "chrf": y})
    out = rank_correlation(df, n_boot=50).set_index("statistic")
    assert list(out.reset_index().columns) == ["statistic", "value", "lo", "hi", "n_sources"]
    assert out.loc["spearman", "value"] == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert out.loc["kendall", "value"] == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
    assert (out["n_sources"] == 1).all()


def test_rank_correlation_counts_distinct_candidates_and_skips_degenerate_sources():
    perfect = pd.DataFrame({"example_id": "p", "text": ["a", "b", "c", "c", "c"], "logprob": [1, 2, 3, 3, 3],
                            "chrf": [10, 20, 30, 30, 30]})
    too_few = pd.DataFrame({"example_id": "f", "text": ["a", "b", "b"], "logprob": [1, 2, 2], "chrf": [1, 2, 2]})
    constant = pd.DataFrame({"example_id": "c", "text": ["a", "b", "c"], "logprob": [1, 2, 3], "chrf": [5, 5, 5]})
    out = rank_correlation(pd.concat([perfect, too_few, constant]), n_boot=20)
    assert out["value"].tolist() == [1.0, 1.0] and out["n_sources"].tolist() == [1, 1]
    empty = rank_correlation(pd.concat([too_few, constant]).assign(method="m"), by="method", n_boot=20)
    assert empty["n_sources"].tolist() == [0, 0] and empty["value"].isna().all()


# --- binned_curve -------------------------------------------------------------------------------------------------

def test_binned_curve_on_a_known_monotone_relationship():
    df = pd.DataFrame({"logprob": np.arange(100.0)[::-1], "chrf": 2.0 * np.arange(100.0)[::-1]})
    out = binned_curve(df, within=None, bins=10)
    assert list(out.columns) == ["bin", "x_lo", "x_hi", "x_mid", "y_mean", "lo", "hi", "n"]
    assert out["bin"].tolist() == list(range(10)) and (out["n"] == 10).all()
    assert out["y_mean"].tolist() == pytest.approx([2 * (10 * b + 4.5) for b in range(10)])
    lo, hi = stats.t.interval(0.95, 9, loc=9.0, scale=np.std(2.0 * np.arange(10), ddof=1) / math.sqrt(10))
    assert (out.loc[0, "lo"], out.loc[0, "hi"]) == pytest.approx((lo, hi))
    assert out[["x_lo", "x_mid", "x_hi"]].iloc[3].tolist() == pytest.approx([0.3, 0.35, 0.4])


def test_binned_curve_ranks_within_sources_and_groups():
    # Two sources on very different logprob scales, the same quality ordering within each.
    rows = [{"method": m, "example_id": s, "logprob": offset + i, "chrf": float(i)}
            for m in ("a", "b") for s, offset in (("short", -5.0), ("long", -500.0)) for i in range(4)]
    out = binned_curve(pd.DataFrame(rows), bins=4, by="method")
    assert out["method"].tolist() == ["a"] * 4 + ["b"] * 4
    assert out["y_mean"].tolist() == [0.0, 1.0, 2.0, 3.0] * 2 and (out["n"] == 2).all()
    assert out["lo"].tolist() == out["y_mean"].tolist()  # no spread within a bin: a zero-width interval


# --- rate_ci ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("k,n", [(7, 20), (0, 15), (15, 15), (1, 1)])
def test_rate_ci_equals_the_wilson_interval(k, n):
    z = stats.norm.ppf(0.975)
    p = k / n
    centre = (k + z * z / 2) / (n + z * z)
    half = z * math.sqrt(n) / (n + z * z) * math.sqrt(p * (1 - p) + z * z / (4 * n))
    df = pd.DataFrame({"method": "m", "search_error": [1.0] * k + [0.0] * (n - k) + [np.nan]})
    out = rate_ci(df, "search_error").iloc[0]
    assert (out["value"], out["lo"], out["hi"], out["k"], out["n"]) == pytest.approx(
        (p, centre - half, centre + half, k, n), abs=1e-12)


def test_rate_ci_golden_and_groups():
    df = pd.DataFrame({"method": ["a"] * 20 + ["b"] * 4, "empty": [True] * 7 + [False] * 13 + [False] * 4})
    out = rate_ci(df, "empty").set_index("method")
    assert (out.loc["a", "lo"], out.loc["a", "hi"]) == pytest.approx((0.18119182410108206, 0.5671457233147638))
    assert out.loc["b", "value"] == 0.0 and out.loc["b", "lo"] == pytest.approx(0.0, abs=1e-15)
    with pytest.raises(ValueError, match="boolean or 0/1"):
        rate_ci(df.assign(empty=2.0), "empty")


# --- logistic_fit -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def simulated() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    x = rng.normal(0.0, 1.5, size=5000)
    return pd.DataFrame({"source_len": x, "degenerate": rng.random(5000) < expit(-1.0 + 0.8 * x)})


def test_logistic_fit_recovers_known_coefficients(simulated):
    coef, _ = logistic_fit(simulated, x="source_len", y="degenerate")
    assert list(coef.columns) == ["term", "estimate", "se", "lo", "hi", "p_value"]
    assert coef["term"].tolist() == ["intercept", "source_len"]
    for truth, (_, row) in zip((-1.0, 0.8), coef.iterrows(), strict=True):
        assert abs(row["estimate"] - truth) < 3 * row["se"]
        assert row["lo"] < row["estimate"] < row["hi"]
    assert coef.loc[1, "p_value"] < 1e-12


def test_logistic_fit_is_the_maximum_likelihood_solution(simulated):
    coef, curve = logistic_fit(simulated, x="source_len", y="degenerate", grid=[-2.0, 0.0, 2.0])
    x, y = simulated["source_len"].to_numpy(), simulated["degenerate"].to_numpy(float)

    def nll(beta):
        eta = beta[0] + beta[1] * x
        return np.sum(np.logaddexp(0, eta) - y * eta)

    best = optimize.minimize(nll, np.zeros(2), method="BFGS", options={"gtol": 1e-8}).x
    assert coef["estimate"].to_numpy() == pytest.approx(best, abs=1e-4)
    # The score equations hold at the estimate, and the standard errors are the inverse information's.
    p = expit(coef.loc[0, "estimate"] + coef.loc[1, "estimate"] * x)
    design = np.column_stack([np.ones_like(x), x])
    assert design.T @ (y - p) == pytest.approx([0.0, 0.0], abs=1e-8)
    cov = np.linalg.inv(design.T @ (design * (p * (1 - p))[:, None]))
    assert coef["se"].to_numpy() == pytest.approx(np.sqrt(np.diag(cov)))
    assert curve["x"].tolist() == [-2.0, 0.0, 2.0]
    assert curve["p"].to_numpy() == pytest.approx(expit(coef.loc[0, "estimate"] + coef.loc[1, "estimate"]
                                                        * np.array([-2.0, 0.0, 2.0])))
    assert ((curve["lo"] < curve["p"]) & (curve["p"] < curve["hi"])).all()


def test_logistic_fit_default_grid_spans_x():
    df = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], "y": [0, 0, 1, 0, 1, 1]})
    _, curve = logistic_fit(df, x="x", y="y")
    assert len(curve) == 50 and curve["x"].iloc[0] == 0.0 and curve["x"].iloc[-1] == 5.0


@pytest.mark.parametrize("x,y,message", [
    ([0.0, 1.0, 2.0, 3.0], [True, True, True, True], "both outcomes"),
    ([0.0, 1.0, 2.0, 3.0], [False, False, True, True], "separates"),
    ([0.0, 1.0, 1.0, 3.0], [False, True, False, True], "separates"),  # quasi-complete: a tie at the boundary
    ([2.0, 2.0, 2.0, 2.0], [False, True, False, True], "constant"),
    ([0.0, 1.0, 2.0, 3.0], [0.0, 0.5, 1.0, 0.0], "boolean or 0/1"),
])
def test_logistic_fit_rejects_degenerate_input(x, y, message):
    with pytest.raises(ValueError, match=message):
        logistic_fit(pd.DataFrame({"x": x, "y": y}), x="x", y="y")


@pytest.mark.parametrize("call,message", [
    (lambda df: bootstrap_ci(df, lambda g: 0.0, n_boot=0), "n_boot"),
    (lambda df: corpus_ci(df, "y", alpha=1.5), "alpha"),
    (lambda df: paired_bootstrap(df, "y", baseline="a", n_boot=0), "n_boot"),
    (lambda df: binned_curve(df, x="y", y="y", bins=0), "bins"),
    (lambda df: rate_ci(df, "y", alpha=0.0), "alpha"),
])
def test_bad_arguments_fail_with_a_message(call, message):
    with pytest.raises(ValueError, match=message):
        call(_normal_sample({"a": 5}).assign(rank=0))
