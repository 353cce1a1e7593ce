"""The sparse solver's solution, evaluated by local kriging from its basis-functional values.

The sparse Gauss-Newton step solves the reduced system with the approximate covariance Θ̃ of the
basis functionals (their sparse factor), not the exact one. Its coefficients c are therefore only
meaningful together with Θ̃: the kernel expansion Σ c φ with the EXACT kernel (what
CollocationSolution evaluates) amplifies the factor's small errors through the ill-conditioned
system into O(1) errors between the points (measured: 0.7 against the dense solution's 0.05 at
484 points). What is accurate is the iterate's values at the basis functionals, t = Θ̃ Wᵀ c. The
solution is evaluated from them the way the factor itself was built: (L u)(x) is the kriging
prediction of L u at x from the basis functionals at the k sites nearest x (in the kernel's
screening coordinates, `SparseSolution.screening`), t treated as observations with the factor's
nugget S on their diagonal:

    (L u)(x) = K(L δ_x, s) (Θ_ss + S_s)⁻¹ t_s.

By the screening effect this local conditional mean matches the global one to an accuracy that
improves exponentially with the neighbourhood's size (k ≈ 3 ρ^d sites); every evaluation point
costs one dense solve of a few hundred functionals, batched in JAX, with no N × M array. At a site
that carries L among its basis functionals the value is read from t instead.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int
from scipy.spatial import cKDTree

from .._errors import ConfigError
from ..kernels import AbstractKernel
from ..solve._constraint import Constraint, OnField
from ..solve._gram import functional_gram, operator_gram
from ..solve._operators import AbstractOperator, Evaluation
from ._basis_posterior import BasisPosterior
from ._scales import screening_coordinates

# Evaluation points per batched call: the local Gram blocks of a batch are batch × (k·m)² entries.
_BATCH = 256


class SparseSolution(eqx.Module):
    """u given by its values `values` at the basis functionals (functional i: operator
    operators[operator_of[i]] at sites[site_of[i]]); `kernels`, `constraints`, `weights` and
    `coefficients` are the last step's, as in CollocationSolution."""

    kernels: tuple[AbstractKernel, ...]
    constraints: tuple[Constraint, ...]
    weights: tuple[Float[Array, "mg ng"], ...]
    coefficients: tuple[Float[Array, " ng"], ...]
    sites: Float[np.ndarray, "s d"]
    scales: Float[np.ndarray, " d"]
    operators: tuple[AbstractOperator, ...] = eqx.field(static=True)
    site_functionals: Int[np.ndarray, "s mmax"]
    functional_operator: Int[np.ndarray, " n"]
    values: Float[np.ndarray, " n"]
    shift: Float[np.ndarray, " n"]
    neighbours: int = eqx.field(static=True)
    #: Θ̃ Wᵀ c without the factor's nugget: the iterate's own values at the basis functionals
    #: (`values` keep the nugget, as the kriging pairs them with it).
    iterate_values: Float[np.ndarray, " n"]
    #: The posterior covariance of the basis values in the last step's model (`_basis_posterior.py`),
    #: for `SparsePosterior`; None where that step failed. It holds the solve's factors.
    basis_posterior: BasisPosterior | None = None

    @property
    def kernel(self) -> AbstractKernel:
        return self.kernels[0]

    def apply(self, operator: AbstractOperator | OnField, points: Float[Array, "n d"], field: int = 0) -> Float[Array, " n"]:
        """(L u)(x) at each point, for any operator L (one field: `field` must be 0)."""
        if isinstance(operator, OnField):
            operator, field = operator.operator, operator.field
        if field != 0:
            raise ConfigError(f"the sparse solver's solution has one field (0), got field {field!r}")
        points = np.asarray(points, dtype=np.float64)
        distance, near = self.nearest_sites(points)
        result = np.empty(points.shape[0])
        # At a site that carries L among its basis functionals, (L u)(x) is that functional's value
        # (what the kriging would reproduce, to its accuracy): no local solve there.
        stored = self._stored_functional(operator, near[:, 0], distance[:, 0])
        known = stored >= 0
        result[known] = self.iterate_values[stored[known]]
        unknown = np.flatnonzero(~known)
        if unknown.size == 0:
            return jnp.asarray(result)
        points = points[unknown]
        functionals, valid = self.neighbourhood_functionals(near[unknown])
        site_of = self._site_of()
        out = []
        for count, (rows, mask, x) in padded_batches(_BATCH, functionals, valid, points):
            one_hot = np.eye(len(self.operators))[self.functional_operator[rows]] * mask[:, :, None]
            predicted = _krige(
                self.kernel, self.operators, operator, jnp.asarray(x), jnp.asarray(self.sites[site_of[rows]]),
                jnp.asarray(one_hot), jnp.asarray(np.where(mask, self.shift[rows], 1.0)),
                jnp.asarray(np.where(mask, self.values[rows], 0.0)),
            )
            out.append(np.asarray(predicted)[:count])
        result[unknown] = np.concatenate(out)
        return jnp.asarray(result)

    def nearest_sites(self, points: Float[np.ndarray, "n d"]) -> tuple[Float[np.ndarray, "n k"], Int[np.ndarray, "n k"]]:
        """Distances to and indices of the kriging neighbourhood's sites of each point (screening
        coordinates, nearest first)."""
        distance, near = cKDTree(self.screening(self.sites)).query(self.screening(points), k=self.neighbours)
        return distance.reshape(points.shape[0], -1), near.reshape(points.shape[0], -1)

    def neighbourhood_functionals(self, near: Int[np.ndarray, "n k"]) -> tuple[Int[np.ndarray, "n K"], Bool[np.ndarray, "n K"]]:
        """The basis functionals at the sites `near` of each point, flattened per point, and which
        are real (False: padding, index 0)."""
        functionals = self.site_functionals[near].reshape(near.shape[0], -1)  # −1: padding
        valid = functionals >= 0
        return np.where(valid, functionals, 0), valid

    def screening(self, points: Float[Array, "n d"]) -> Float[np.ndarray, "n d"]:
        """The points in the coordinates where neighbourhoods are measured (the kernel's warp, if
        any, then division by its lengthscales): nearest sites in these coordinates are the ones
        the kernel correlates most with the point."""
        return screening_coordinates(self.kernel, points, self.scales)

    def _stored_functional(self, operator, nearest_site, distance) -> Int[np.ndarray, " n"]:
        """For each point: the basis functional `operator` at the point's nearest site when the
        point IS that site (distance 0), else −1."""
        stored = -np.ones(nearest_site.shape[0], dtype=np.int64)
        if operator not in self.operators:
            return stored
        column = self.operators.index(operator)
        candidates = self.site_functionals[nearest_site]  # (n, mmax), −1: padding
        match = (candidates >= 0) & (self.functional_operator[np.maximum(candidates, 0)] == column) & (distance == 0)[:, None]
        hit = np.any(match, axis=1)
        stored[hit] = candidates[hit, np.argmax(match[hit], axis=1)]
        return stored

    def __call__(self, points: Float[Array, "n d"], field: int = 0) -> Float[Array, " n"]:
        """u at each point."""
        return self.apply(Evaluation(), points, field)

    def _site_of(self) -> Int[np.ndarray, " n"]:
        site_of = np.empty(self.values.shape[0], dtype=np.int64)
        sites, slots = np.nonzero(self.site_functionals >= 0)
        site_of[self.site_functionals[sites, slots]] = sites
        return site_of


@eqx.filter_jit
def _krige(kernel, operators, operator, x, sites, weights, diagonal, values):
    """Batched local kriging: for each b, K(L δ_{x_b}, s_b) (Θ_{s_b} + diag) ⁻¹ values_b."""
    def one(xb, sb, wb, db, vb):
        gram = functional_gram(kernel, operators, wb, sb, wb, sb)
        # Padding rows have zero weights: a unit diagonal there (db = 1) leaves the rest alone.
        gram = gram + jnp.diag(db)
        cross = operator_gram(kernel, (operator,), xb[None], operators, sb)[0, :, 0, :]  # (m, K)
        cross = jnp.sum(cross.T * wb, axis=1)
        lower = jnp.linalg.cholesky(gram)
        return cross @ jax.scipy.linalg.cho_solve((lower, True), vb)

    return jax.vmap(one)(x, sites, weights, diagonal, values)


def padded_batches(batch: int, *arrays: np.ndarray):
    """(count, parts) for consecutive slices of `batch` rows of the arrays (same length), the last
    slice padded to `batch` rows by repeating its first row, so that a jitted batch function sees one
    shape; the first `count` rows of its result are the real ones. Fewer than `batch` rows in all
    are padded only to the next power of two: a few points cost a few local solves, not `batch`
    of them (with a large neighbourhood each is a dense factorization), and the jitted function
    still sees at most log2(batch) + 1 shapes."""
    total = arrays[0].shape[0]
    if 0 < total < batch:
        batch = 1 << (total - 1).bit_length()
    for start in range(0, total, batch):
        parts = [a[start : start + batch] for a in arrays]
        count = parts[0].shape[0]
        if count < batch:
            parts = [np.concatenate([p, np.repeat(p[:1], batch - count, axis=0)]) for p in parts]
        yield count, parts


def site_functional_table(site_of: Int[np.ndarray, " n"], sites: int) -> Int[np.ndarray, "s mmax"]:
    """table[s] lists the functionals at site s, padded with −1."""
    counts = np.bincount(site_of, minlength=sites)
    table = -np.ones((sites, max(int(counts.max()), 1)), dtype=np.int64)
    order = np.argsort(site_of, kind="stable")
    slot = np.arange(site_of.shape[0]) - np.repeat(np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    table[site_of[order], slot] = order
    return table


def neighbour_count(rho: float, dim: int, sites: int) -> int:
    """Sites in a kriging neighbourhood: about the number within ρ spacings (3 ρ^d), at most all."""
    return int(min(sites, max(4, np.ceil(3.0 * rho**dim))))

