"""Which level a decoupled BLJES query evaluates: information gain per unit cost, with a floor on
each level's share of the observations.

The greedy rule "query the level whose best acquisition divided by its cost is larger" treats the
gains of the two levels as if they added up independently. They do not: what an f observation says
about the bilevel optimum Ω depends on where θ*(x) lies, and what g observations say about Ω is of
little use while f is known only at the initial points. The one-step gain of a g query is computed
as if f were as well known as its surrogate claims, so a cheap lower level can win every
comparison. Measured on SMD1 with an f query costing ten g queries (3 seeds, 30 queries): every one
of the 27 decoupled queries went to g, and the regret grew from query 15 to query 30.

The floor keeps each level at no less than `min_share` of all observations of f and g (the initial
queries count for both): when a level has fallen below it, that level is queried, whatever the
ratio says. Where the ratio already splits the queries (equal costs: 10–17 of 27 queries per level
on SMD1) the floor of 0.2 never binds; at 10 : 1 it gives f about one query in five.
"""

import numpy as np

from .._errors import ConfigError


def check_min_share(owner: str, min_share: float) -> None:
    if not (np.isfinite(min_share) and 0.0 <= min_share < 0.5):
        raise ConfigError(f"{owner}: min_share must be in [0, 0.5) (0 = gain per cost alone), got {min_share!r}")


def query_upper_level(
    best_upper_gain: float,
    best_lower_gain: float,
    costs: tuple[float, float],
    observations: tuple[int, int],
    min_share: float,
) -> bool:
    """True if the next decoupled query evaluates f, False if g.

    `observations` = (number of f observations, number of g observations) so far; `costs` = (cost of
    an f query, cost of a g query)."""
    n_upper, n_lower = observations
    total = n_upper + n_lower
    if total > 0 and min_share > 0.0:
        if n_upper < min_share * total:
            return True
        if n_lower < min_share * total:
            return False
    return best_upper_gain / costs[0] >= best_lower_gain / costs[1]
