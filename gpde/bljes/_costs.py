"""Regret against the cost spent: reading a run at a cost budget instead of a query count.

With per-level costs (an f query costs c_f, a g query c_g; a coupled or initial query both), runs
of different methods or settings spend different costs in the same number of queries, so they are
compared at equal cumulative cost: the regret of the recommendation made after the last query
that fits in the budget. `BilevelRun.cost` holds the cumulative cost after each query.
"""

import numpy as np
from jaxtyping import Float


def regret_at_cost(regret: Float[np.ndarray, " T"], cost: Float[np.ndarray, " T"], budget: float) -> float:
    """Regret after the last query t with cost[t] ≤ budget (NaN if no query fits, or the run
    ended before spending the budget: then it cannot say what the budget would have bought)."""
    regret, cost = np.asarray(regret, dtype=float), np.asarray(cost, dtype=float)
    if regret.shape != cost.shape or regret.ndim != 1:
        raise ValueError(f"regret and cost must be columns of one run, got shapes {regret.shape} and {cost.shape}")
    fits = np.nonzero(cost <= budget * (1.0 + 1e-12))[0]
    if fits.size == 0 or cost[-1] < budget * (1.0 - 1e-12):
        return float("nan")
    return float(regret[fits[-1]])
