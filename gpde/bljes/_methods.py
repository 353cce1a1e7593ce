"""The optimization methods: BLJES and its baselines, one `propose` step each.

Every method sees the same fitted surrogates (`SearchState`) and is followed by the same
recommendation rule (bilevel optimum of the posterior means, in `_loop.py`); they differ only in
where they query next. All work in the unit box.

* ``random``: (x, θ) uniform in the box; decoupled: the level is a fair coin.
* ``trusted-random``: uniform among grid candidates in the trusted set
  {(x, θ): LCB_g(x, θ) ≤ min_θ' UCB_g(x, θ')} (the pairs whose θ may still be lower-optimal);
  decoupled: the level whose standardized posterior variance at the point is larger.
* ``bilbo``: BILBO-style (Chew, Nguyen, Low 2025) on a fixed discrete grid, see `BILBO`.
* ``bljes``: bilevel joint entropy search, see `_acquisition.py` and `BLJES`.
"""

import abc
import time
from contextlib import contextmanager
from dataclasses import dataclass

import equinox as eqx
import jax
import numpy as np
from jaxtyping import PRNGKeyArray

from .._errors import ConfigError
from ._state import SearchState

#: Which levels a query evaluates.
BOTH, UPPER, LOWER = "both", "f", "g"


@dataclass(frozen=True)
class Query:
    """A point of the unit box and the levels to evaluate there."""

    x: np.ndarray
    theta: np.ndarray
    level: str = BOTH


class PhaseTimer:
    """Wall seconds per phase of one iteration (phases may be entered several times)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, phase: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start


class AbstractBilevelMethod(eqx.Module):
    """Chooses the next query from the fitted surrogates."""

    name: eqx.AbstractClassVar[str]

    @abc.abstractmethod
    def propose(self, state: SearchState, key: PRNGKeyArray, *, coupled: bool, timer: PhaseTimer) -> Query:
        """The next query. Results must be concrete numpy arrays (the timer measures real work)."""


class RandomSearch(AbstractBilevelMethod):
    """Uniform random queries (the surrogates serve only the recommendation)."""

    name = "random"

    def propose(self, state, key, *, coupled, timer):
        with timer("acquisition"):
            x_key, theta_key, level_key = jax.random.split(key, 3)
            x = np.asarray(jax.random.uniform(x_key, (state.x_dim,)))
            theta = np.asarray(jax.random.uniform(theta_key, (state.theta_dim,)))
            level = BOTH if coupled else (UPPER if bool(jax.random.bernoulli(level_key)) else LOWER)
        return Query(x, theta, level)


METHODS: dict[str, type[AbstractBilevelMethod]] = {"random": RandomSearch}


def make_method(name: str, **options) -> AbstractBilevelMethod:
    """The method `name` with keyword `options` (its constructor's arguments)."""
    if name not in METHODS:
        raise ConfigError(f"unknown BLJES method {name!r}; choose one of {sorted(METHODS)}")
    try:
        return METHODS[name](**options)
    except TypeError as error:
        raise ConfigError(f"bad options {sorted(options)} for method {name!r}: {error}") from None
