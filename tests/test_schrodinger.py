"""Nonlinear Schrödinger (problems/schrodinger.py): the split-step Fourier reference converges in x
and at fourth order in t and meets the exact 2-soliton on a long period; a small collocation solve
with the periodic kernel reaches it.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gpde import GaussNewton
from gpde._kernel_choice import make_kernel
from gpde.kernels import PeriodicGaussian
from gpde.problems._schrodinger_reference import nls_split_step, two_sech
from gpde.problems.schrodinger import Schrodinger


def _grid():
    tt, xx = np.meshgrid(np.array([0.5, 1.0]), np.linspace(-5, 5, 41)[:-1], indexing="ij")
    return tt.ravel(), xx.ravel()


def _solve(modes, step):
    t, x = _grid()
    return nls_split_step(two_sech, t, x, -5.0, 10.0, modes=modes, time_step=step)


def test_reference_converges_in_time_at_fourth_order():
    # Same x-resolution, so only the time error differs. Measured (2026-11-29, N = 1024, against
    # τ = 5e-4, N = 2048): τ = 8e-3: 2.1e-3, 4e-3: 1.7e-4 (ratio 12.7; 16 for fourth order, 4 for
    # Strang splitting alone).
    fine = _solve(256, 1e-3)
    coarse = np.abs(_solve(256, 8e-3) - fine).max()
    middle = np.abs(_solve(256, 4e-3) - fine).max()
    assert coarse / middle > 8.0


def test_reference_converges_in_space():
    # The 10-periodic extension of 2 sech x has a derivative jump of 0.054 at x = ±5, so Fourier
    # convergence is algebraic: max error ~ 1/N. Measured (2026-11-29, τ = 1e-3, against N = 2048,
    # τ = 5e-4): N = 128: 9.8e-5, 256: 3.4e-5, 512: 1.4e-5, 1024 (default): 5.6e-6.
    fine = _solve(1024, 1e-3)
    coarse = np.abs(_solve(128, 1e-3) - fine).max()
    middle = np.abs(_solve(256, 1e-3) - fine).max()
    assert 1e-6 < middle < coarse / 2.0 < 1e-4


def _satsuma_yajima(t, x):
    """The exact 2-soliton of i h_t + ½ h_xx + |h|²h = 0 on the whole line with h(0, x) = 2 sech x
    (Satsuma and Yajima 1974): 4 (cosh 3x + 3 e^{4it} cosh x) e^{it/2} / (cosh 4x + 4 cosh 2x + 3 cos 4t)."""
    return 4 * (np.cosh(3 * x) + 3 * np.exp(4j * t) * np.cosh(x)) * np.exp(0.5j * t) / (
        np.cosh(4 * x) + 4 * np.cosh(2 * x) + 3 * np.cos(4 * t))


def test_reference_matches_the_exact_two_soliton_on_a_long_period():
    # On a period of 60 the tails (2 sech 30 ~ 2e-13) make the periodic and whole-line problems the
    # same, and the solution is smooth, so the solver meets the closed form: measured (2026-11-29,
    # N = 1024, t ∈ {0.3, 0.785, 1}, |x| ≤ 4) 7.0e-7 at τ = 1e-3, 1.1e-5 at τ = 2e-3 (16×: fourth
    # order). A wrong sign or factor in either substep is off by O(1).
    t = np.repeat([0.3, 0.785, 1.0], 41)
    x = np.tile(np.linspace(-4, 4, 41), 3)
    h = nls_split_step(two_sech, t, x, -30.0, 60.0, modes=1024, time_step=1e-3)
    assert np.abs(h - _satsuma_yajima(t, x)).max() < 5e-6
    # The problem's own period 10 is another problem: its solution differs from the whole-line one
    # by up to 8.4e-3 (measured), far above the reference's own error.
    periodic = nls_split_step(two_sech, t, x, -5.0, 10.0)
    assert np.abs(periodic - _satsuma_yajima(t, x)).max() > 1e-3


def test_registry_builds_the_periodic_kernel():
    kernel = make_kernel("periodic-gaussian-10", (0.2, 0.3), 2)
    assert isinstance(kernel, PeriodicGaussian)
    assert kernel.period == 10.0 and kernel.periodic_dims == (1,)
    np.testing.assert_allclose(np.asarray(kernel.lengthscale), [0.2, 0.3], rtol=1e-14)


def test_small_solve_reaches_the_reference():
    # Measured (2026-11-29, seed 0, t ∈ [0, 0.25], both fields ℓ = (0.3, 0.5), 6 Gauss-Newton
    # steps, 11 × 40 grid): 100 + 40 points: u RMS 2.1e-3, v RMS 3.2e-3 (ℓ = (0.2, 0.4): 4.4e-3,
    # 5.2e-3). The bound is 3× the measured error; a kernel that is not periodic, or a wrong sign in
    # either equation, misses it by far (|h| ~ 2).
    problem = Schrodinger(t_end=0.25)
    keys = jax.random.split(jax.random.PRNGKey(0))
    interior = problem.domain.interior_points(100, "random", keys[0])
    boundary = problem.domain.boundary_points(40, "random", keys[1], problem.boundary_faces)
    kernels = tuple(PeriodicGaussian(jnp.array([0.3, 0.5]), period=10.0, periodic_dims=(1,)) for _ in range(2))
    solution, _ = GaussNewton(nugget=1e-10, max_steps=6).solve(kernels, problem.constraints(interior, boundary))
    tt, xx = np.meshgrid(np.linspace(0, 0.25, 11), np.linspace(-5, 5, 41)[:-1], indexing="ij")
    points = np.column_stack([tt.ravel(), xx.ravel()])
    for field, name in enumerate(problem.fields):
        error = np.asarray(solution(jnp.asarray(points), field)) - problem.field_reference(name, points)
        assert np.sqrt(np.mean(error**2)) < 1e-2
    # Periodic in x: the solution takes the same values at x = −5 and x = 5.
    ends = jnp.array([[0.2, -5.0], [0.2, 5.0]])
    assert float(jnp.abs(jnp.diff(solution(ends, 0)))[0]) < 1e-12


def test_boundary_points_must_be_initial():
    problem = Schrodinger()
    with pytest.raises(ValueError, match="initial line"):
        problem.constraints(jnp.array([[0.5, 0.0]]), jnp.array([[0.5, 5.0]]))


@pytest.mark.slow  # compiling the two-field learner with the periodic kernel dominates
def test_learning_runs_with_the_periodic_kernel(tmp_path):
    from gpde.app._config import LearnConfig, resolve
    from gpde.app._learn_run import run_learn
    from gpde.app._run import learned_kernel
    from gpde.io import _store as store

    config = resolve("schrodinger", Schrodinger.learn_defaults,
                     dict(n_interior=100, n_boundary=40, n_validation=40, gn_steps=2, inner_steps=3, eval_steps=6,
                          grid=8, lengthscale=(0.3, 0.5), parameters={"t_end": 0.25}),
                     config_class=LearnConfig)
    # (The published start ℓ' = 1 makes Gauss-Newton diverge at this size: the re-solve raises.)
    run = run_learn(Schrodinger, config)
    kernels = run.result.kernel
    assert len(kernels) == 2 and all(isinstance(k, PeriodicGaussian) for k in kernels)
    initial = np.log(np.array([0.3, 0.5]))
    for kernel in kernels:
        assert kernel.period == 10.0 and kernel.periodic_dims == (1,)
        assert np.all(np.abs(np.asarray(kernel.log_lengthscale) - initial) > 1e-4)
    assert np.all(np.isfinite(np.asarray(run.record.groups["history"]["loss"])))
    # The stored kernels rebuild through the registry name, period included.
    back = learned_kernel(store.write_run(tmp_path / "nls.h5", run.record))
    for stored, learned in zip(back, kernels):
        assert stored.period == 10.0
        np.testing.assert_allclose(np.asarray(stored.lengthscale), np.asarray(learned.lengthscale), rtol=1e-14)
