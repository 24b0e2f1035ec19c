"""CUPED (Deng, Xu, Kohavi, Walker 2013): less variance from a pre-experiment covariate. Pure.

Each outcome y comes with a covariate x measured before the experiment (last month's
conversions of the user, say), so x cannot depend on the arm. The adjusted outcome

    y' = y - theta (x - mean of x over every arm)

has the same expected difference between arms and a variance smaller by the share of y's
variance that x explains (rho^2). `theta` is the pooled within-arm regression slope of y on x,
cov(x, y) / var(x). Everything is computed from the arms' running sums (n, sum y, sum y^2,
sum x, sum x^2, sum x y), so the adjusted arms are tallies again and go through the same
always-valid comparison.
"""

from __future__ import annotations

from collections.abc import Mapping

from registry.experiments.domain import Cuped, Tally


def covered(tallies: Mapping[int, Tally]) -> bool:
    """Every arm has at least two outcomes, and each of them came with a covariate."""
    return bool(tallies) and all(t.n >= 2 and t.cov_n == t.n for t in tallies.values())


def adjust(tallies: Mapping[int, Tally]) -> tuple[dict[int, Tally], Cuped] | None:
    """The arms' tallies of the adjusted outcomes, and the adjustment; None when some outcome
    has no covariate or the covariate does not vary within the arms."""
    if not covered(tallies):
        return None
    sxx = sxy = syy = 0.0  # pooled within-arm sums of squares and cross-products
    for t in tallies.values():
        mx, my = t.cov_total / t.n, t.total / t.n
        sxx += t.cov_total_sq - t.n * mx * mx
        sxy += t.cov_cross - t.n * mx * my
        syy += t.total_sq - t.n * my * my
    if sxx <= 0:
        return None
    theta = sxy / sxx
    x_bar = sum(t.cov_total for t in tallies.values()) / sum(t.n for t in tallies.values())
    adjusted: dict[int, Tally] = {}
    for version, t in tallies.items():
        # sum of (x - x_bar), of (x - x_bar)^2, of y (x - x_bar)
        sx = t.cov_total - t.n * x_bar
        sxx_c = t.cov_total_sq - 2 * x_bar * t.cov_total + t.n * x_bar * x_bar
        sxy_c = t.cov_cross - x_bar * t.total
        total = t.total - theta * sx
        total_sq = t.total_sq - 2 * theta * sxy_c + theta * theta * sxx_c
        adjusted[version] = Tally(version, t.n, total, total_sq)
    residual = syy - sxy * sxy / sxx  # the pooled within-arm sum of squares left
    reduction = 1.0 - residual / syy if syy > 0 else 0.0
    return adjusted, Cuped(theta=theta, covariate_mean=x_bar, variance_reduction=reduction)
