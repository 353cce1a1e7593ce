"""How much can the Darcy data say about the log-permeability a at all, whatever the method?

The Cramér–Rao bound for a finite family a_c = a_true + Σ_k c_k b_k (b_k fixed basis functions):
the observations are y_i = u_c(x_i) + N(0, σ²), so the Fisher information of c at c = 0 is
F = JᵀJ / σ², J_ik = ∂u(x_i)/∂c_k, and every unbiased estimate ĉ has covariance ⪰ F⁻¹. The error of
the estimated field â(x) = a_true(x) + Σ ĉ_k b_k(x) on a grid is then at least

    E ‖â − a_true‖² / m ≥ (1/m) Σ_grid b(x)ᵀ F⁻¹ b(x),

reported relative to the RMS of a_true (the relative L2 error of the Darcy target). A
family that knows more about a (fewer, better-chosen basis functions) has a smaller bound; the GP
prior of problems/darcy.py knows far less than any small family, so a bound above a target says
the target is out of reach of the data, not of the solver. J is computed by central differences
of the same finite-difference solve that makes the data (`solve_darcy_fd` on the problem's
`data_grid`, observations at its nodes), so the bound is for exactly the problem's data.

Used by benchmarks/darcy_identifiability.py; the numbers are in problems/darcy.py's docstring.
"""

from collections.abc import Callable, Sequence

import numpy as np

from ._darcy_reference import interior_nodes, solve_darcy_fd

Basis = Sequence[Callable[[np.ndarray], np.ndarray]]


def constant_basis() -> Basis:
    """a = a_true + c: one unknown level (a shift of a scales e^{a}, so u by e^{−c}, exactly)."""
    return (lambda points: np.ones(len(points)),)


def level_and_amplitude_basis(true_log_permeability, level: float) -> Basis:
    """a = a_true + c₀ + c₁ (a_true − level): a family that already knows the exact shape of a and
    misses only its level and amplitude — far more prior knowledge than any method has."""
    return (lambda points: np.ones(len(points)), lambda points: true_log_permeability(points) - level)


def fourier_basis(max_frequency: int) -> Basis:
    """Products cos/sin(2π i x₁) · cos/sin(2π j x₂), 0 ≤ i, j ≤ max_frequency ((2K + 1)² functions):
    the smooth periodic family that contains the true a's dominant modes."""
    one_dimensional = [lambda t: np.ones_like(t)]
    for k in range(1, max_frequency + 1):
        one_dimensional += [lambda t, k=k: np.cos(2 * np.pi * k * t), lambda t, k=k: np.sin(2 * np.pi * k * t)]
    return tuple(
        lambda points, f=f, g=g: f(points[:, 0]) * g(points[:, 1]) for f in one_dimensional for g in one_dimensional
    )


def observation_sensitivities(problem, basis: Basis, step: float = 1e-4) -> np.ndarray:
    """J (n_observations, len(basis)): ∂u(x_i)/∂c_k at c = 0 by central differences of the
    finite-difference solve that made the problem's data (error O(step²))."""
    grid = int(problem.data_grid)
    nodes = interior_nodes(grid)
    points, _ = problem.observations()
    # Observations sit on grid nodes (problems/darcy.py draws them from `interior_nodes`).
    index = np.argmin(((points[:, None, :] - nodes[None, :, :]) ** 2).sum(-1), axis=1)
    if not np.allclose(nodes[index], points, rtol=0.0, atol=1e-12):
        raise ValueError("the observations are not on the nodes of the data grid")
    true = problem.field_reference  # a_true through the problem, so the bound is for its data
    columns = []
    for function in basis:
        def shifted(sign, function=function):
            return lambda x: true("a", x) + sign * step * function(x)

        plus = solve_darcy_fd(shifted(1.0), grid)[1][index]
        minus = solve_darcy_fd(shifted(-1.0), grid)[1][index]
        columns.append((plus - minus) / (2 * step))
    return np.stack(columns, axis=1)


def cramer_rao_relative_l2(problem, basis: Basis, grid_points: np.ndarray, noise: float | None = None) -> float:
    """Lower bound on the relative L2 error (on `grid_points`) of any unbiased estimate of a within
    the family spanned by `basis`, from the problem's observations with noise std `noise` (default:
    the problem's σ). Infinite when the data cannot fix every coefficient (singular information)."""
    noise = float(problem.noise) if noise is None else float(noise)
    sensitivities = observation_sensitivities(problem, basis)
    information = sensitivities.T @ sensitivities / noise**2
    eigenvalues, eigenvectors = np.linalg.eigh(information)
    if eigenvalues.min() <= 1e-12 * eigenvalues.max():
        return float("inf")
    covariance = (eigenvectors / eigenvalues) @ eigenvectors.T
    values = np.stack([function(grid_points) for function in basis], axis=1)
    mean_variance = np.einsum("ik,kl,il->", values, covariance, values) / len(grid_points)
    true = problem.field_reference("a", grid_points)
    return float(np.sqrt(mean_variance / np.mean(true**2)))
