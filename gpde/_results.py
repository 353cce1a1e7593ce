"""How a Gauss-Newton solve, a bilevel learn or a BLJES run ended: one enumeration for all three,
each member carrying the message that a user sees (what happened and what to change).

Inside jit a step returns a member (an `eqx.Enumeration` item wraps an int32 array, so it is a
pytree); outside, `RESULTS[member]` is its message and `result_name(member)` its name, which is
what result files store.
"""

import equinox as eqx
import numpy as np


class RESULTS(eqx.Enumeration):
    """The outcome of a solve, learn or BLJES run (`is_failure` says which are failures)."""

    successful = "finished: ran its whole schedule or budget without a numerical failure"
    converged = "converged: the relative update of the iterate fell below the tolerance"
    stalled = (
        "stalled: the update levelled off at the nugget and round-off floor and the residual stopped "
        "improving; the solution is usable, and a smaller residual needs a smaller nugget or more "
        "collocation points"
    )
    max_steps_reached = (
        "stopped at the step limit before the update fell below the tolerance; raise the number of "
        "steps or loosen the tolerance"
    )
    diverged = (
        "diverged: the PDE residual at the collocation points ended above that of the function the "
        "iteration started from (or of u = 0), so the result is worse than not solving; use a "
        "lengthscale near the spacing of the collocation points, more collocation points, or a larger "
        "nugget (e.g. ×100); if it stopped after only a few steps, allow more steps"
    )
    cholesky_failed = (
        "the Cholesky factorization of the Gram matrix failed (it is not numerically positive "
        "definite); increase the nugget (e.g. ×100), use a shorter lengthscale, or use fewer / "
        "better separated collocation points"
    )
    nonfinite_iterate = "the new iterate has NaN or inf values; increase the nugget or change the lengthscale"
    nonfinite_linearization = (
        "the linearized PDE (its Gram matrix or right-hand side) has NaN or inf values: the "
        "previous iterate blew up or the PDE residual is not finite there; increase the nugget, "
        "change the lengthscale, or check the problem's residual function"
    )
    nonfinite_loss = (
        "the outer loss or its gradient became NaN or inf, and the learner stopped with the last "
        "hyperparameters whose loss was finite; lower the learning rate, raise the nugget, or start "
        "from a different lengthscale"
    )
    interrupted = (
        "interrupted (Ctrl-C) before the end of the schedule; the hyperparameters learned so far "
        "were kept; rerun to finish"
    )
    nonfinite_recommendation = (
        "a recommendation (the bilevel optimum of the surrogates' posterior means) or its regret is "
        "NaN or inf; raise the surrogates' noise floor or start with more initial queries"
    )


#: The members that mean the result is not to be trusted: the solver raises SolverError for them
#: (carrying the member as `.result`), the command line exits with code 1.
FAILURES = frozenset({
    "diverged", "cholesky_failed", "nonfinite_iterate", "nonfinite_linearization", "nonfinite_recommendation",
})


def result_name(result: RESULTS) -> str:
    """The member's name, e.g. 'converged' (for result files and `is_failure`)."""
    index = int(np.asarray(result._value))
    return next(name for name, item in RESULTS._name_to_item.items() if int(np.asarray(item._value)) == index)


def is_failure(result: RESULTS) -> bool:
    """Whether `result` is a numerical failure (see FAILURES)."""
    return result_name(result) in FAILURES
