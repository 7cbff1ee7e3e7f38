"""The two-sample t-test of TCAV's significance, without scipy.

Kim et al. (2018, and their `tcav` code) compare the concept's scores over runs with the
scores of random-vs-random CAVs by `scipy.stats.ttest_ind`, i.e. Student's two-sided test
with pooled variance: that is the default here (`equal_var=True`); Welch's test
(`equal_var=False`) is there for unequal spreads. The two-sided p-value of t with ν degrees
of freedom is the regularized incomplete beta I_{ν/(ν+t²)}(ν/2, 1/2), computed with the
continued fraction of Numerical Recipes (§6.4, modified Lentz), accurate to ~1e-14 here.

Where scipy answers NaN (both samples constant), this answers what the data says: equal
constants are no evidence of a difference (p = 1), different constants are a certain one
(p = 0). TCAV scores are fractions of a few dozen images, so constant samples do happen.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

_TINY = 1e-300
_EPS = 1e-15
_MAX_TERMS = 500


def _beta_fraction(a: float, b: float, x: float) -> float:
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _MAX_TERMS + 1):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                   -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + aa / c
            c = c if abs(c) > _TINY else _TINY
            step = d * c
            h *= step
        if abs(step - 1.0) < _EPS:
            break
    return h


def incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), for a, b > 0 and 0 ≤ x ≤ 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):  # where the fraction converges fast
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, 1.0 - x) / b


def t_two_sided(t: float, df: float) -> float:
    """P(|T| ≥ |t|) for Student's t with `df` degrees of freedom."""
    if math.isinf(t):
        return 0.0
    return min(1.0, incomplete_beta(df / 2.0, 0.5, df / (df + t * t)))


@dataclass(frozen=True)
class TTest:
    statistic: float  # t (inf when the samples are distinct constants, 0 when equal ones)
    p_value: float  # two-sided
    df: float


def t_test(a: Sequence[float], b: Sequence[float], equal_var: bool = True) -> TTest:
    """Two-sided two-sample t-test of equal means: Student's (pooled variance, as
    `scipy.stats.ttest_ind` by default and Kim et al.) or, with `equal_var=False`, Welch's.
    Each sample needs two values at least."""
    n1, n2 = len(a), len(b)
    if n1 < 2 or n2 < 2:
        raise ValueError("a t-test needs at least two values in each sample")
    m1, m2 = math.fsum(a) / n1, math.fsum(b) / n2
    v1 = math.fsum((x - m1) ** 2 for x in a) / (n1 - 1)
    v2 = math.fsum((x - m2) ** 2 for x in b) / (n2 - 1)
    if equal_var:
        df = float(n1 + n2 - 2)
        pooled = ((n1 - 1) * v1 + (n2 - 1) * v2) / df
        se2 = pooled * (1.0 / n1 + 1.0 / n2)
    else:
        q1, q2 = v1 / n1, v2 / n2
        se2 = q1 + q2
        df = se2 * se2 / (q1 * q1 / (n1 - 1) + q2 * q2 / (n2 - 1)) if se2 > 0 else float(
            n1 + n2 - 2)
    diff = m1 - m2
    if se2 <= 0.0:  # both constant (module doc)
        return TTest(0.0 if diff == 0 else math.copysign(math.inf, diff),
                     1.0 if diff == 0 else 0.0, df)
    t = diff / math.sqrt(se2)
    return TTest(t, t_two_sided(t, df), df)
