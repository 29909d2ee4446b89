"""Why a little low-entropy noise in the data makes the mode degenerate, in closed form (DESIGN.md §5).

The contamination argument of Yoshida (2024, *Making the Most of your Model*, PhD thesis) and Yoshida, Goyal &
Gimpel (2024, "MAP's not dead yet: Uncovering true language model modes by conditioning away degeneracy", ACL).

**Setting.** Outputs y range over a countable set; D is a set of degenerate outputs (the empty output, a copy of
the source, ...). The data distribution is the mixture

    P = (1 - eps) P_pop + eps Q,    0 <= eps < 1,    P_pop(D) = 0,    Q(D) = 1,

of a population P_pop of proper outputs and noise Q on D. Write m = max_y P_pop(y) and q = max_y Q(y) (a
distribution on a countable set attains its largest mass), and H_inf(R) = -log max_y R(y) for the min-entropy.

**Theorem 1 (critical eps).** The modes of P lie in D iff eps > eps* = m / (m + q), outside D iff eps < eps*; at
eps = eps* both hold a mode. Equivalently logit(eps*) = H_inf(Q) - H_inf(P_pop): the mode turns degenerate once
the log-odds of the noise exceed the min-entropy gap between population and noise.
*Proof.* The supports are disjoint, so max_{y in D} P(y) = eps q and max_{y not in D} P(y) = (1 - eps) m. The
mode is in D iff eps q > (1 - eps) m, i.e. eps (m + q) > m. Taking logs of eps / (1 - eps) > m / q gives the
second form. ∎

**Theorem 2 (distances).** TV(P, P_pop) = eps and KL(P_pop || P) = -log(1 - eps), whatever P_pop and Q; the
reverse KL(P || P_pop) is infinite for eps > 0.
*Proof.* Off D, P - P_pop = -eps P_pop; on D, P - P_pop = eps Q. Hence sum_y |P - P_pop| = eps P_pop(not D) +
eps Q(D) = 2 eps. On the support of P_pop, P = (1 - eps) P_pop, so KL(P_pop || P) = sum_y P_pop(y) log(1 / (1 -
eps)) = -log(1 - eps); P puts mass eps on D, where P_pop has none. ∎
So P can be as close to the population as one likes (eps -> 0 in TV and KL) and still have a degenerate mode: by
Theorem 1 that needs only eps > eps*, and eps* is tiny when P_pop has high min-entropy.

**Theorem 3 (conditioning).** For an attribute A with Q(A) = 0 and P_pop(A) > 0, P(y | A) = P_pop(y | A) for
every y and every eps < 1; so the mode of P given A is the mode of P_pop given A.
*Proof.* For y in A, Q(y) = 0, so P(y) = (1 - eps) P_pop(y) and P(A) = (1 - eps) P_pop(A); divide. ∎
A = "not degenerate" (not D) gives back P_pop itself; A = "length L", for a length no noise output has, gives
the population's length-L mode (the length-conditional mode).

**Corollary 4 (entropy and length).** eps* = 1 / (1 + q exp(H_inf(P_pop))) falls as the population's
min-entropy grows. As H_inf <= H (Shannon entropy), eps* >= 1 / (1 + q exp(H(P_pop))), with equality for a
uniform P_pop. For a population of L i.i.d. tokens with token distribution p, m = (max p)^L, so logit(eps*) =
L log max p - log q falls linearly in L and eps* ~ (max p)^L / q decays exponentially: long outputs (long
translations) are the first to lose their mode to noise.

**Theorem 5 (high-entropy noise spares the mode, not sampling).** If Q is uniform on n outputs, q = 1 / n and
eps* = n m / (n m + 1) -> 1 as n grows: at any eps < 1 the mode is proper once n > eps / ((1 - eps) m). Yet a
sample from P is degenerate with probability P(D) = eps, whatever n.
*Proof.* Theorem 1 with q = 1 / n: the mode is in D iff eps / n > (1 - eps) m. P(D) = eps Q(D) = eps. ∎

Distributions are explicit ``{output: probability}`` mappings (any hashable outputs, e.g. token tuples as in
``decoding.toy.TabularLM``); closed forms take scalars or numpy arrays (broadcast) and return numpy scalars or
arrays.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.special import expit

__all__ = [
    "conditional", "critical_epsilon", "critical_epsilon_iid", "high_entropy_noise", "iid_population_max_prob",
    "kl_pop_to_mixture", "mixture", "mixture_mode_is_degenerate", "mode", "tv_distance",
]

K = TypeVar("K", bound=Hashable)

_SUM_TOL = 1e-9
"""How far the masses of a distribution may sum from 1 (float rounding of a normalised table)."""


def _probability(name: str, x: ArrayLike, *, zero_ok: bool = False) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    low_ok = arr >= 0 if zero_ok else arr > 0
    if not np.all(low_ok & (arr <= 1)):
        interval = "[0, 1]" if zero_ok else "(0, 1]"
        raise ValueError(f"{name} must be a probability in {interval}, got {arr}")
    return arr


def _eps(eps: ArrayLike) -> np.ndarray:
    arr = np.asarray(eps, dtype=float)
    if not np.all((arr >= 0) & (arr < 1)):
        raise ValueError(f"eps must lie in [0, 1) (at eps = 1 nothing of the population is left), got {arr}")
    return arr


def critical_epsilon(m: ArrayLike, q: ArrayLike) -> Any:
    """eps* = m / (m + q) (Theorem 1): the noise weight above which the mode of (1 - eps) P_pop + eps Q is
    degenerate, for m = max P_pop and q = max Q."""
    m_, q_ = _probability("m", m), _probability("q", q)
    return (m_ / (m_ + q_))[()]


def mixture_mode_is_degenerate(m: ArrayLike, q: ArrayLike, eps: ArrayLike) -> Any:
    """Whether every mode of (1 - eps) P_pop + eps Q lies in D: eps q > (1 - eps) m (Theorem 1). At eps = eps*
    a proper output ties with the noise, so the answer there is False."""
    m_, q_, e = _probability("m", m), _probability("q", q), _eps(eps)
    return (e * q_ > (1 - e) * m_)[()]


def tv_distance(eps: ArrayLike) -> Any:
    """TV(P, P_pop) = eps (Theorem 2): total variation between the mixture and its population."""
    return _eps(eps)[()]


def kl_pop_to_mixture(eps: ArrayLike) -> Any:
    """KL(P_pop || P) = -log(1 - eps) nats (Theorem 2); the reverse divergence is infinite for eps > 0."""
    return (-np.log1p(-_eps(eps)))[()]


def _token_peak(token_probs: ArrayLike) -> float:
    p = _probability("token_probs", token_probs, zero_ok=True)
    if p.ndim != 1 or abs(p.sum() - 1) > _SUM_TOL:
        raise ValueError(f"token_probs must be one distribution over tokens (a 1-d array summing to 1), got {p}")
    return float(p.max())


def _length(length: ArrayLike) -> np.ndarray:
    arr = np.asarray(length)
    if not np.issubdtype(arr.dtype, np.integer) or np.any(arr < 0):
        raise ValueError(f"length must be a non-negative integer (tokens), got {arr}")
    return arr


def iid_population_max_prob(token_probs: ArrayLike, length: ArrayLike) -> Any:
    """m = (max p)^L: the largest probability of a population of ``length`` i.i.d. tokens drawn from
    ``token_probs`` (Corollary 4); the population's min-entropy is L * -log max p."""
    return (_token_peak(token_probs) ** _length(length).astype(float))[()]


def critical_epsilon_iid(token_probs: ArrayLike, length: ArrayLike, q: ArrayLike = 1.0) -> Any:
    """eps* for a population of ``length`` i.i.d. tokens and noise of largest mass ``q`` (Corollary 4):
    logit(eps*) = L log max p - log q. Computed from the log-odds, so it stays finite for long outputs whose
    (max p)^L underflows while eps* does not (small q)."""
    log_odds = _length(length) * math.log(_token_peak(token_probs)) - np.log(_probability("q", q))
    return expit(log_odds)[()]


def high_entropy_noise(m: float, noise_support: Iterable[int], eps: Iterable[float]) -> pd.DataFrame:
    """Theorem 5 tabulated: noise uniform on n outputs against a population of largest mass ``m``.

    One row per (n, eps) with ``noise_support`` n, ``noise_entropy`` log n (nats), ``eps``, ``critical_eps``,
    ``mode_is_degenerate``, ``mode_prob`` (the mixture's largest mass) and ``sample_degenerate_prob`` (the
    chance that a sample is degenerate, eps for every n)."""
    m_ = float(_probability("m", m))
    rows = []
    for n, e in itertools.product(noise_support, eps):
        if int(n) != n or n < 1:
            raise ValueError(f"noise_support must hold positive integers (outputs the noise is spread on), got {n}")
        q, e = 1.0 / int(n), float(_eps(e))
        rows.append({"noise_support": int(n), "noise_entropy": math.log(n), "eps": e,
                     "critical_eps": float(critical_epsilon(m_, q)),
                     "mode_is_degenerate": bool(mixture_mode_is_degenerate(m_, q, e)),
                     "mode_prob": max((1 - e) * m_, e * q), "sample_degenerate_prob": e})
    return pd.DataFrame(rows)


def _distribution(name: str, dist: Mapping[K, float]) -> None:
    values = np.fromiter(dist.values(), dtype=float, count=len(dist))
    if not len(values) or np.any(values < 0) or abs(values.sum() - 1) > _SUM_TOL:
        raise ValueError(f"{name} must be a non-empty distribution: non-negative masses summing to 1 "
                         f"(they sum to {values.sum() if len(values) else 0})")


def mixture(pop: Mapping[K, float], noise: Mapping[K, float], eps: float) -> dict[K, float]:
    """P = (1 - eps) ``pop`` + eps ``noise`` as an explicit distribution (outputs of zero mass left out).
    The supports must be disjoint (P_pop(D) = 0): the theorems above rely on it."""
    _distribution("pop", pop)
    _distribution("noise", noise)
    e = float(_eps(eps))
    shared = [y for y, p in noise.items() if p > 0 and pop.get(y, 0.0) > 0]
    if shared:
        raise ValueError(f"population and noise must have disjoint supports; both put mass on {shared[:3]}")
    out = {y: (1 - e) * p for y, p in pop.items() if p > 0}
    out.update({y: e * p for y, p in noise.items() if p > 0 and e > 0})
    return out


def conditional(dist: Mapping[K, float], attribute: Callable[[K], bool]) -> dict[K, float]:
    """P(y | A) for the outputs y of ``dist`` with ``attribute(y)`` true (Theorem 3)."""
    kept = {y: p for y, p in dist.items() if p > 0 and attribute(y)}
    total = math.fsum(kept.values())
    if total <= 0:
        raise ValueError("the attribute has probability 0 under the distribution: P(. | A) is undefined")
    return {y: p / total for y, p in kept.items()}


def mode(dist: Mapping[K, float]) -> tuple[K, float]:
    """(y, P(y)) for a most probable output; among ties, the first in ``dist``'s order."""
    if not dist:
        raise ValueError("an empty distribution has no mode")
    y = max(dist, key=lambda k: dist[k])
    return y, dist[y]
