"""The contamination theory: closed forms against brute force on random explicit mixtures, and against exact search
on toy language models (the mode flips exactly at eps*, conditioning recovers the population's modes)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from analysis import theory
from decoding import MinLength, NotCopyOfSource, TabularLM, exact_search, length_conditional_modes
from experiments.contamination_toy import LOG_ODDS_OFFSETS, ToyPopulation, toy_check
from figures import critical_epsilon, style

matplotlib.use("Agg")

Dist = dict[tuple[int, ...], float]


def _random_mixture(seed: int) -> tuple[Dist, Dist]:
    """A random population and random noise on disjoint sets of outputs (noise outputs start with token 9)."""
    rng = np.random.default_rng(seed)
    n_pop, n_noise = int(rng.integers(2, 40)), int(rng.integers(1, 6))
    pop_w = rng.dirichlet(np.full(n_pop, rng.choice([0.1, 1.0, 10.0])))
    noise_w = rng.dirichlet(np.full(n_noise, rng.choice([0.1, 1.0, 10.0])))
    pop = {(1, i): float(w) for i, w in enumerate(pop_w)}
    noise = {(9, i): float(w) for i, w in enumerate(noise_w)}
    return pop, noise


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("factor", [1 - 1e-3, 1 + 1e-3])
def test_critical_epsilon_matches_brute_force_modes_on_both_sides(seed: int, factor: float) -> None:
    pop, noise = _random_mixture(seed)
    m, q = max(pop.values()), max(noise.values())
    eps = theory.critical_epsilon(m, q) * factor
    mix = {y: (1 - eps) * pop.get(y, 0.0) + eps * noise.get(y, 0.0) for y in pop.keys() | noise.keys()}
    brute_mode = max(mix, key=lambda y: mix[y])
    assert (brute_mode in noise) == (factor > 1) == theory.mixture_mode_is_degenerate(m, q, eps)
    assert theory.mixture(pop, noise, eps) == pytest.approx(mix, rel=1e-12)


def test_critical_epsilon_is_the_logistic_of_the_min_entropy_gap() -> None:
    m, q = np.array([0.5, 1e-3, 0.2]), np.array([1.0, 0.5, 1e-4])
    gap = -np.log(q) - -np.log(m)  # H_inf(Q) - H_inf(P_pop)
    assert theory.critical_epsilon(m, q) == pytest.approx(1 / (1 + np.exp(-gap)))
    assert theory.critical_epsilon(0.5, 1.0) == pytest.approx(1 / 3)
    # exactly at eps* the noise output only ties with the population's mode: not (strictly) degenerate
    assert not theory.mixture_mode_is_degenerate(0.25, 0.25, 0.5)


@pytest.mark.parametrize("seed", range(10))
def test_tv_and_kl_match_direct_sums(seed: int) -> None:
    pop, noise = _random_mixture(seed)
    for eps in (0.0, 1e-4, 0.1, 0.5, 0.99):
        mix = theory.mixture(pop, noise, eps)
        outputs = pop.keys() | noise.keys()
        tv = 0.5 * math.fsum(abs(mix.get(y, 0.0) - pop.get(y, 0.0)) for y in outputs)
        kl = math.fsum(p * math.log(p / mix[y]) for y, p in pop.items())
        assert theory.tv_distance(eps) == pytest.approx(tv, abs=1e-12)
        assert theory.kl_pop_to_mixture(eps) == pytest.approx(kl, abs=1e-12)
        reverse = math.fsum(p * math.log(p / pop[y]) if y in pop else math.inf for y, p in mix.items())
        assert reverse == (math.inf if eps > 0 else pytest.approx(0.0, abs=1e-12))


@pytest.mark.parametrize("seed", range(20))
def test_conditioning_returns_the_population_conditional_mode_at_every_eps(seed: int) -> None:
    pop, noise = _random_mixture(seed)
    rng = np.random.default_rng(1000 + seed)
    kept = {y for y in pop if rng.random() < 0.5} | {next(iter(pop))}
    attribute = kept.__contains__  # Q(A) = 0: no noise output is in A
    eps_star = theory.critical_epsilon(max(pop.values()), max(noise.values()))
    pop_given_a = theory.conditional(pop, attribute)
    for eps in (0.0, eps_star / 2, eps_star * 1.001, 0.5 * (1 + eps_star), 0.999):
        mix = theory.mixture(pop, noise, eps)
        assert theory.conditional(mix, attribute) == pytest.approx(pop_given_a, rel=1e-12)
        assert theory.mode(theory.conditional(mix, attribute))[0] == theory.mode(pop_given_a)[0]
    # conditioning on "not degenerate" gives back the population itself, even when the mode is degenerate
    mix = theory.mixture(pop, noise, 0.5 * (1 + eps_star))
    assert theory.mode(mix)[0] in noise
    assert theory.conditional(mix, lambda y: y not in noise) == pytest.approx(pop, rel=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_iid_population_max_prob_by_enumeration_and_exponential_decay(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(int(rng.integers(2, 5))))
    for length in range(5):
        probs = [math.prod(p[list(y)]) for y in itertools.product(range(len(p)), repeat=length)]
        assert theory.iid_population_max_prob(p, length) == pytest.approx(max(probs), rel=1e-12)
        for q in (1.0, 0.3):
            assert theory.critical_epsilon_iid(p, length, q) == pytest.approx(
                theory.critical_epsilon(max(probs), q), rel=1e-12)
    lengths = np.arange(60)
    eps_star = theory.critical_epsilon_iid(p, lengths)
    log_odds = np.log(eps_star) - np.log1p(-eps_star)
    assert np.all(np.diff(eps_star) < 0)
    assert np.diff(log_odds) == pytest.approx(np.full(59, math.log(p.max())), rel=1e-6)


def test_critical_epsilon_iid_survives_an_underflowing_max_prob() -> None:
    assert theory.iid_population_max_prob([0.5, 0.5], 1200) == 0.0
    assert theory.critical_epsilon_iid([0.5, 0.5], 1200, q=1e-300) == pytest.approx(
        math.exp(-1200 * math.log(2) + 300 * math.log(10)), rel=1e-9)


def test_high_entropy_noise_spares_the_mode_but_not_sampling() -> None:
    pop, _ = _random_mixture(3)
    m = max(pop.values())
    eps_grid = (0.01, 0.2, 0.5, 0.9)
    table = theory.high_entropy_noise(m, [1, 10, 1000], eps_grid)
    assert len(table) == 12 and list(table.columns) == [
        "noise_support", "noise_entropy", "eps", "critical_eps", "mode_is_degenerate", "mode_prob",
        "sample_degenerate_prob"]
    for row in table.itertuples():
        noise = {(9, i): 1 / row.noise_support for i in range(row.noise_support)}
        mix = theory.mixture(pop, noise, row.eps)
        assert row.mode_is_degenerate == (theory.mode(mix)[0] in noise)
        assert row.mode_prob == pytest.approx(theory.mode(mix)[1], rel=1e-12)
        assert row.sample_degenerate_prob == pytest.approx(math.fsum(mix[y] for y in noise), rel=1e-12)
    assert table.groupby("eps")["critical_eps"].apply(lambda s: s.is_monotonic_increasing).all()
    spread = table[table["noise_support"] == 1000]
    assert not spread["mode_is_degenerate"].any() and (spread["sample_degenerate_prob"] == spread["eps"]).all()
    assert table[table["noise_support"] == 1]["mode_is_degenerate"].any()


def test_bad_inputs_are_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="m must be a probability"):
        theory.critical_epsilon(0.0, 1.0)
    with pytest.raises(ValueError, match="eps must lie in"):
        theory.kl_pop_to_mixture(1.0)
    with pytest.raises(ValueError, match="disjoint supports"):
        theory.mixture({(1,): 0.5, (): 0.5}, {(): 1.0}, 0.1)
    with pytest.raises(ValueError, match="summing to 1"):
        theory.mixture({(1,): 0.5}, {(): 1.0}, 0.1)
    with pytest.raises(ValueError, match="probability 0"):
        theory.conditional({(1,): 1.0}, lambda y: len(y) == 2)
    with pytest.raises(ValueError, match="non-negative integer"):
        theory.iid_population_max_prob([0.5, 0.5], 1.5)
    with pytest.raises(ValueError, match="kind must be"):
        ToyPopulation("zipf")


def _brute_modes(dist: Dist) -> set[tuple[int, ...]]:
    best = max(dist.values())
    return {y for y, p in dist.items() if p >= best * (1 - 1e-12)}


@pytest.mark.parametrize("seed", range(4))
def test_exact_search_on_a_contaminated_table_flips_at_eps_star_and_conditioning_undoes_it(seed: int) -> None:
    """Independent of ``toy_check``: a random table with the empty output and the source's copy removed, each noise
    at eps*(1 -/+ 1e-3) and 2 eps*; certified exact search against enumeration of the population."""
    source = (3, 3, 3)
    raw = TabularLM.random(4, 3, seed=seed, concentration=0.5).table
    for noise, constraint in (((), MinLength(1)), (source, NotCopyOfSource())):
        pop = theory.conditional(raw, lambda y, d=noise: y != d)
        eps_star = theory.critical_epsilon(max(pop.values()), 1.0)
        for factor in (1 - 1e-3, 1 + 1e-3, 2.0):
            lm = TabularLM(theory.mixture(pop, {noise: 1.0}, eps_star * factor), 4, 0)
            mode = exact_search(lm, source, max_len=3)
            assert mode.certified and (mode.best.token_ids[:-1] == noise) == (factor > 1)
            away = exact_search(lm, source, max_len=3, constraints=[constraint])
            assert away.certified and away.best.token_ids[:-1] in _brute_modes(pop)
            lengths = sorted({len(y) for y in pop})
            per_length = length_conditional_modes(lm, source, lengths=lengths, constraints=[constraint])
            for n in lengths:
                at_n = {y: p for y, p in pop.items() if len(y) == n}
                assert per_length[n].certified and per_length[n].best.token_ids[:-1] in _brute_modes(at_n)


SMALL = (ToyPopulation("iid", 3, 3, 0.5), ToyPopulation("iid", 4, 3, 0.6), ToyPopulation("tabular", 4, 3, 0.3, seed=2),
         ToyPopulation("ngram", 4, 3, 1.0, seed=3))


@pytest.fixture(scope="module")
def toy() -> pd.DataFrame:
    return toy_check(SMALL)


def test_toy_check_agrees_with_the_closed_form(toy: pd.DataFrame) -> None:
    assert len(toy) == len(SMALL) * 2 * len(LOG_ODDS_OFFSETS)
    assert toy["certified"].all()
    assert (toy["mode_is_degenerate"] == toy["predicted_degenerate"]).all()
    assert (toy["predicted_degenerate"] == (toy["log_odds_offset"] > 0)).all()
    assert toy["conditional_mode_is_population"].all() and toy["length_conditional_is_population"].all()
    # the mode's probability is the larger of the two maxima in Theorem 1's proof
    expected = np.log(np.maximum((1 - toy["eps"]) * toy["pop_max_prob"], toy["eps"] * toy["noise_max_prob"]))
    assert toy["mode_logprob"].to_numpy() == pytest.approx(expected.to_numpy(), abs=1e-9)
    assert (toy["min_entropy"] <= toy["entropy"] + 1e-12).all()


def test_critical_epsilon_figure_renders(toy: pd.DataFrame, tmp_path: Path) -> None:
    assert critical_epsilon.REQUIRES.missing(toy) is None
    fig = critical_epsilon.plot(toy)
    (ax,) = fig.axes
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_yscale() == "log"
    assert len(ax.lines) == 3 and fig.legends  # the table's noise (q = 1) and the two high-entropy references
    paths = style.save(fig, tmp_path / "critical_epsilon")
    assert [p.read_bytes()[:4] for p in paths] == [b"%PDF", b"\x89PNG"]


def test_critical_epsilon_figure_shows_disagreements_and_exclusions(toy: pd.DataFrame) -> None:
    bad = toy.assign(mode_is_degenerate=~toy["mode_is_degenerate"], certified=toy.index != 0)
    texts = [t.get_text() for t in critical_epsilon.plot(bad).legends[0].texts]
    assert any("disagrees with theory" in t for t in texts) and any("1 uncertified excluded" in t for t in texts)
    assert "lacks the column" in (critical_epsilon.REQUIRES.missing(toy.drop(columns="eps")) or "")
    with pytest.raises(ValueError, match="no certified toy mixtures"):
        critical_epsilon.plot(toy.assign(certified=False))
