"""Bilevel kernel learning: hypergradient, inner step, learning direction, storage, failures."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gpde import RESULTS, ConfigError, GaussNewton, SolverError, error_metrics
from gpde.learn._learner import BilevelLearner, linearized_validation_loss, linearized_validation_residuals
from gpde.app._config import LearnConfig, resolve
from gpde.app._learn_run import evaluate_kernel, learning_points, run_learn
from gpde.solve._linearize import initial_values, operator_blocks, gauss_newton_step, values_at
from gpde.app._run import learned_kernel
from gpde.io import _store as store
from gpde.kernels import Gaussian
from gpde.problems.elliptic import NonlinearElliptic


def _small_elliptic(n_interior=64, n_boundary=32, n_validation=48):
    problem = NonlinearElliptic()
    keys = jax.random.split(jax.random.PRNGKey(3), 3)
    interior = problem.domain.interior_points(n_interior, "random", keys[0])
    boundary = problem.domain.boundary_points(n_boundary, "random", keys[1])
    validation = problem.domain.interior_points(n_validation, "random", keys[2])
    return problem, problem.constraints(interior, boundary), problem.validation_constraints(validation, boundary)


def _loss_of_log_lengthscale(train, validation, train_values, validation_values, nugget):
    def loss(log_lengthscale):
        kernel = eqx.tree_at(lambda k: k.log_lengthscale, Gaussian(1.0), log_lengthscale)
        return linearized_validation_loss(kernel, train, validation, train_values, validation_values, nugget, True)

    return loss


@pytest.fixture(scope="module")
def one_step_iterate():
    """(train, validation, operator values of both) at a non-trivial iterate: one Gauss-Newton
    step from zero with ℓ = 0.3 on the small elliptic problem (compiled: op by op it took ~25 s)."""
    problem, train, validation = _small_elliptic()

    @eqx.filter_jit
    def step(train, validation):
        blocks = operator_blocks((Gaussian(0.3),), train)
        outcome = gauss_newton_step(blocks, train, initial_values(train), 1e-8, True)
        return outcome.values, values_at((Gaussian(0.3),), validation, train, outcome.weights, outcome.coefficients)

    return train, validation, *step(train, validation)


@pytest.mark.parametrize("lengthscale", [0.15, 0.4])
def test_hypergradient_matches_finite_differences(lengthscale, one_step_iterate):
    train, validation, train_values, validation_values = one_step_iterate
    # A nugget of 1e-4 keeps the loss smooth on the scale of the difference step; with 1e-6 the
    # loss wiggles at step 1e-3 (ill-conditioned Gram) and no difference quotient is reliable.
    loss = jax.jit(_loss_of_log_lengthscale(train, validation, train_values, validation_values, 1e-4))
    at = jnp.log(lengthscale)
    gradient = float(jax.grad(loss)(at))
    step = 1e-3
    # Fourth-order central difference: truncation ~ step⁴ · |loss⁽⁵⁾|.
    finite_difference = float(
        (-loss(at + 2 * step) + 8 * loss(at + step) - 8 * loss(at - step) + loss(at - 2 * step)) / (12 * step)
    )
    assert np.isfinite(gradient)
    assert gradient == pytest.approx(finite_difference, rel=1e-6)


def test_inner_step_equals_one_gauss_newton_step():
    problem, train, validation = _small_elliptic()
    kernel = Gaussian(0.25)
    # Nugget 1e-6: the interpolant's coefficients stay moderate, so the two evaluation routes
    # (batched over evaluation points vs one cross block) differ only by rounding.
    solution, _ = GaussNewton(nugget=1e-6, max_steps=1).solve(kernel, train)
    blocks = operator_blocks((kernel,), train)
    outcome = gauss_newton_step(blocks, train, initial_values(train), 1e-6, True)
    inner = values_at((kernel,), validation, train, outcome.weights, outcome.coefficients)[0]
    points = validation[0].points
    from gpde import Laplacian

    assert np.allclose(inner[0], solution(points), rtol=1e-9, atol=1e-9 * np.max(np.abs(inner[0])))
    assert np.allclose(inner[1], solution.apply(Laplacian(), points), rtol=1e-8, atol=1e-8 * np.max(np.abs(inner[1])))


def test_learning_moves_lengthscale_toward_better_value_and_lowers_error():
    problem, train, validation = _small_elliptic(n_interior=100, n_boundary=40, n_validation=60)
    learner = BilevelLearner(optimizer=optax.adam(0.05), gn_steps=3, inner_steps=15, nugget=1e-10)
    result = learner.learn(Gaussian(0.5), train, validation)
    learned = float(result.kernel.lengthscale)
    # ℓ = 0.5 is too smooth for sin(4πx)sin(4πy); the validation residual pulls ℓ down toward
    # ≈ 0.3 at this size (measured: 0.487, 0.329, 0.300 after the three outer iterations).
    assert learned < 0.4
    assert all(np.isfinite(result.losses))
    assert result.losses[-1] < result.losses[0]
    assert result.result == RESULTS.successful
    # Three Gauss-Newton steps (one per outer iteration) from u = 0: measured training residual
    # RMS 44 against 565 for u = 0.
    assert result.final_residual_rms < 0.2 * result.start_residual_rms


@pytest.mark.slow  # ~20 s of learner compilation; run with -m slow
def test_lengthscale_scan_escapes_the_short_lengthscale_barrier():
    # With these 144 + 48 points and u_0 = 0 the outer loss is 4.6e5 at σ = 0.01, 4.7e5 at 0.02 and
    # 0.04, then 9.3e4 at 0.08 and 5.7e3 at 0.16: from σ₀ = 0.01 gradient steps go the wrong way.
    problem, train, validation = _small_elliptic(n_interior=144, n_boundary=48, n_validation=100)
    settings = dict(optimizer=optax.adam(0.05), gn_steps=2, inner_steps=10, nugget=1e-10)
    stuck = BilevelLearner(lengthscale_scan=False, **settings).learn(Gaussian(0.01), train, validation)
    assert float(stuck.kernel.lengthscale) < 0.02 and stuck.start_note == ""
    scanned = BilevelLearner(**settings).learn(Gaussian(0.01), train, validation)
    assert "lengthscale scan" in scanned.start_note
    assert 0.08 < float(scanned.kernel.lengthscale) < 0.5
    assert scanned.losses[-1] < 1e-2 * stuck.losses[-1]
    # A start that is not behind a barrier is left alone.
    assert BilevelLearner(**settings).learn(Gaussian(0.3), train, validation).start_note == ""


def _learn_config(**overrides):
    settings = dict(n_interior=64, n_boundary=32, n_validation=40, gn_steps=2, inner_steps=5, eval_steps=6,
                    grid=20, lengthscale=(0.5,), learning_rate=0.05)
    settings.update(overrides)
    return resolve("elliptic", NonlinearElliptic.learn_defaults, settings, config_class=LearnConfig)


def test_learning_run_round_trips_through_hdf5_and_kernel_from(tmp_path):
    config = _learn_config()
    run = run_learn(NonlinearElliptic, config)
    path = store.write_run(tmp_path / "learn.h5", run.record)
    back = store.read_run(path)
    assert back.group_attrs["after/errors"] == pytest.approx(run.after)
    assert back.group_attrs["before/errors"] == pytest.approx(run.before)
    # The re-solve from the learner's last iterate is stored too (tests/test_solver.py checks the
    # warm start itself; with eval_steps = 6 neither re-solve here is fully converged).
    assert back.group_attrs["after_from_iterate/errors"] == pytest.approx(run.after_from_iterate_fields["errors"])
    assert back.groups["history"]["loss"].shape == (config.gn_steps,)
    # σ of the re-solve with the learned kernel and its calibration, as a solve run stores them.
    std = back.groups["fields"]["u_std"]
    assert std.shape == back.groups["fields"]["u"].shape and np.all(np.isfinite(std)) and np.max(std) > 0
    calibration = back.group_attrs["calibration"]
    assert calibration["amplitude"] > 0 and 0 <= calibration["coverage_2"] <= 1
    # The stored kernel, rebuilt, reproduces the "after" errors on the same points.
    kernel = learned_kernel(path)
    assert float(kernel.lengthscale) == pytest.approx(float(run.result.kernel.lengthscale), rel=1e-14)
    problem = NonlinearElliptic()
    interior, boundary, validation = learning_points(problem, config)
    grid, _ = problem.domain.grid(config.grid)
    u, _ = evaluate_kernel(problem, kernel, interior, boundary, validation, config, grid)
    assert error_metrics(u, problem.reference(np.asarray(grid))) == pytest.approx(run.after, rel=1e-8)


def test_non_finite_loss_stops_with_message_and_keeps_last_good_kernel():
    problem, train, validation = _small_elliptic()
    calls = []

    def poisoned(kernel):
        # Finite near the start, NaN once ℓ has moved by more than 3 % either way.
        return jnp.where(jnp.abs(kernel.log_lengthscale - jnp.log(0.5)) > 0.03, jnp.nan, 0.0)

    learner = BilevelLearner(optimizer=optax.adam(0.01), gn_steps=3, inner_steps=20, regularizer=poisoned)
    result = learner.learn(Gaussian(0.5), train, validation, callback=lambda r, s: calls.append(r))
    assert "non-finite" in result.stopped_because
    assert "kept the last good" in result.stopped_because
    # Stopped after one outer iteration: its iterate (one Gauss-Newton step) overshoots u = 0's
    # residual (measured 33×), which the learner's divergence rule allows.
    assert result.result == RESULTS.nonfinite_loss
    assert result.start_residual_rms < result.final_residual_rms < 1e3 * result.start_residual_rms
    assert abs(np.log(float(result.kernel.lengthscale) / 0.5)) <= 0.03
    assert len(calls) == 1 and 1 <= calls[0].optimizer_steps < 20
    assert np.all(np.isfinite(result.losses))


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(gn_steps=0), "gn_steps"),
        (dict(learning_rate=-1.0), "learning_rate"),
        (dict(trainable="weights"), "trainable"),
        (dict(n_validation=0), "n_validation"),
        (dict(kernel="nope"), "unknown kernel"),
        (dict(scale_search="yes"), "scale_search"),
        (dict(validation_margin=-0.1), "validation_margin"),
        (dict(validation_margin=float("nan")), "validation_margin"),
        (dict(start_steps=-1), "start_steps"),
        (dict(start_steps=2.5), "start_steps"),
        (dict(outer_loss="median"), "outer_loss"),
        (dict(batch_redraw="never"), "batch_redraw"),
        (dict(update_steps=0), "update_steps"),
        (dict(axis_search="yes"), "axis_search"),
        (dict(inner_steps=-1), "inner_steps"),
        (dict(inner_steps=0, scale_search=False), "inner_steps = 0 leaves"),
    ],
)
def test_bad_learning_configs_are_rejected(settings, message):
    with pytest.raises(ConfigError, match=message):
        _learn_config(**settings)


def test_validation_margin_keeps_validation_points_off_the_boundary():
    problem = NonlinearElliptic()
    anywhere = learning_points(problem, _learn_config())
    inset = learning_points(problem, _learn_config(validation_margin=0.05))
    # Training points do not depend on the margin; validation points keep their draw, squeezed inward.
    for a, b in zip(anywhere[:2], inset[:2]):
        np.testing.assert_array_equal(a, b)
    validation = np.asarray(inset[2])
    assert validation.min() >= 0.05 and validation.max() <= 0.95
    np.testing.assert_allclose(validation, 0.05 + 0.9 * np.asarray(anywhere[2]), atol=1e-12)
    with pytest.raises(ConfigError, match="leaves nothing"):
        learning_points(problem, _learn_config(validation_margin=0.5))


def test_learner_rejects_bad_settings():
    with pytest.raises(ConfigError, match="inner_steps"):
        BilevelLearner(inner_steps=0)
    with pytest.raises(ConfigError, match="nugget"):
        BilevelLearner(nugget=-1.0)
    with pytest.raises(ConfigError, match="outer loss"):
        BilevelLearner(outer_loss="median")
    with pytest.raises(ConfigError, match="batch redraw"):
        BilevelLearner(batch_redraw="sometimes")


def test_validation_batches_share_points_between_constraints_of_one_size():
    from gpde.learn._learner import draw_batches

    rng = np.random.default_rng(0)
    first, second, other = draw_batches(rng, (40, 40, 7), 5)
    np.testing.assert_array_equal(first, second)  # e.g. the two equations of a system
    assert len(first) == 5 and len(set(first)) == 5 and np.all(np.diff(first) > 0) and first.max() < 40
    assert len(other) == 5 and len(set(other)) == 5 and other.max() < 7
    assert all(np.array_equal(b, np.arange(n)) for b, n in zip(draw_batches(rng, (40, 7), None), (40, 7)))


@pytest.mark.parametrize("redraw", ["every-step", "every-outer-iteration"])
def test_validation_batches_are_redrawn_every_step_or_every_outer_iteration(redraw):
    # With a zero learning rate θ never moves and the iterate is frozen within an outer
    # iteration, so the recorded losses differ between two steps only if their batches do.
    problem, train, validation = _small_elliptic(n_interior=30, n_boundary=16, n_validation=40)
    learner = BilevelLearner(optimizer=optax.sgd(0.0), gn_steps=2, inner_steps=4, nugget=1e-10, batch_size=5,
                             lengthscale_scan=False, batch_redraw=redraw)
    losses = np.array(learner.learn(Gaussian(0.3), train, validation, seed=1).losses).reshape(2, 4)
    same_within = [len(np.unique(row)) == 1 for row in losses]
    if redraw == "every-step":
        assert not any(same_within)  # 5 of 40 points: four draws alike has probability ~1e-17
    else:
        assert all(same_within) and losses[0, 0] != losses[1, 0]


def test_scale_search_jumps_to_the_lower_basin_and_scales_only_lengthscales():
    # A loss of log ℓ with two basins: a local one at ℓ = 0.113 (loss 1e-4) and the global one at
    # ℓ = 0.2 (loss 2e-5), separated by a barrier at ℓ ≈ 0.15 (the shape measured on the
    # elliptic problem at nugget 1e-10). From ℓ = 0.113 the search must land on the grid point nearest
    # to 0.2 (grid step 2^(1/8)), and leave the variance leaf alone.
    def loss_at(params):
        t = params.kernel.log_lengthscale
        local = 1e-4 + 1e-3 * (t - np.log(0.113)) ** 2
        best = 2e-5 + 1e-3 * (t - np.log(0.2)) ** 2
        return float(jnp.minimum(local, best))

    from gpde.learn._learner import _scale_search
    from gpde.kernels import Scaled

    kernel = Scaled(Gaussian(0.113), 0.7)
    moved, factor = _scale_search(kernel, loss_at)
    assert abs(np.log(float(moved.kernel.lengthscale) / 0.2)) <= np.log(2) / 16 + 1e-12
    assert factor == pytest.approx(float(moved.kernel.lengthscale) / 0.113)
    assert float(moved.variance) == pytest.approx(0.7, rel=1e-14)
    # At the global minimum no factor lowers the loss by 30 %: θ is kept.
    kept, factor = _scale_search(Scaled(Gaussian(0.2), 0.7), loss_at)
    assert factor == 1.0 and float(kept.kernel.lengthscale) == pytest.approx(0.2, rel=1e-14)
    # Non-finite losses at some factors (failed Cholesky at long lengthscales) are skipped.
    def with_holes(params):
        return float("nan") if float(params.kernel.lengthscale) > 0.3 else loss_at(params)

    moved, _ = _scale_search(kernel, with_holes)
    assert abs(np.log(float(moved.kernel.lengthscale) / 0.2)) <= np.log(2) / 16 + 1e-12


def test_axis_search_finds_a_curved_valleys_floor_and_scales_every_field_alike():
    # A loss of (log ℓ_t, log ℓ_x) shaped like the Schrödinger outer loss around its converged
    # start: a curved valley whose slope at the start points to longer ℓ_t, with its floor at
    # (ℓ_t, ℓ_x) × (0.5, 0.25). Per-axis line searches from the start go to longer ℓ_t first; the
    # grid must land on the floor, move both fields' lengthscales by the same factors and leave
    # the other leaves alone.
    from gpde.kernels import PeriodicGaussian, Scaled
    from gpde.learn._learner import _axis_search

    start = np.log(np.array([0.7, 1.6]))
    floor = start + np.log([0.5, 0.25])

    def loss_at(params):
        a, b = np.asarray(params[0].kernel.log_lengthscale) - floor
        return float(1e-5 + (a - 0.5 * b * b) ** 2 + 0.05 * b * b)  # curved: a = b²/2 along the floor

    kernels = (Scaled(PeriodicGaussian(jnp.array([0.7, 1.6]), period=10.0, periodic_dims=(1,)), 0.5),
               PeriodicGaussian(jnp.array([0.7, 1.6]), period=10.0, periodic_dims=(1,)))
    a, b = start - floor
    assert 2 * (a - 0.5 * b * b) < 0  # at the start the loss falls toward longer ℓ_t
    moved, _ = _axis_search(kernels, loss_at)
    np.testing.assert_allclose(np.asarray(moved[0].kernel.lengthscale), [0.35, 0.4], rtol=1e-12)
    np.testing.assert_allclose(np.asarray(moved[1].lengthscale), [0.35, 0.4], rtol=1e-12)
    assert float(moved[0].variance) == pytest.approx(0.5, rel=1e-14)
    assert loss_at(moved) < 0.7 * loss_at(kernels)
    # At the floor nothing on the grid is 30 % lower: θ is kept.
    kept, _ = _axis_search(moved, loss_at)
    np.testing.assert_allclose(np.asarray(kept[1].lengthscale), [0.35, 0.4], rtol=1e-12)


def test_axis_search_needs_lengthscales_and_few_axes():
    from gpde.kernels import Scaled
    from gpde.learn._learner import _check_axis_search

    _, train, held_out = _small_elliptic(16, 12, 8)
    learner = BilevelLearner(gn_steps=1, inner_steps=0, axis_search=True)
    kernel = Scaled(Gaussian(0.2), 0.7)
    variance_only = eqx.tree_at(lambda k: k.log_variance, jax.tree.map(lambda _: False, kernel), True)
    with pytest.raises(ConfigError, match="axis_search scales lengthscales"):
        learner.learn(kernel, train, held_out, trainable=variance_only)
    with pytest.raises(ConfigError, match="4 axes"):
        _check_axis_search(Gaussian(jnp.ones(4)))
    with pytest.raises(ConfigError, match="inner_steps = 0"):
        BilevelLearner(inner_steps=0)


@pytest.mark.slow
def test_scale_search_in_the_learner_moves_to_the_lower_loss_sooner():
    # 256 + 64 + 200 points, σ₀ = 0.1: Adam alone needs several outer iterations to climb to the
    # better lengthscales (measured with 2 × 5 steps: σ 0.141, last outer loss 1.85); the search
    # jumps toward them at the start of the second iteration (measured: factor 2^(7/8), σ 0.221,
    # loss 0.072).
    problem = NonlinearElliptic()
    config = _learn_config(n_interior=256, n_boundary=64, n_validation=200)
    interior, boundary, validation = learning_points(problem, config)
    train = problem.training_constraints(interior, boundary)
    held_out = problem.validation_constraints(validation, boundary)
    settings = dict(optimizer=optax.adam(0.05), gn_steps=2, inner_steps=5, nugget=1e-10)
    plain = BilevelLearner(**settings).learn(Gaussian(0.1), train, held_out)
    searched = BilevelLearner(scale_search=True, **settings).learn(Gaussian(0.1), train, held_out)
    assert plain.records[-1].scale_factor == 1.0
    assert searched.records[-1].scale_factor > 1.2
    assert float(searched.kernel.lengthscale) > 1.1 * float(plain.kernel.lengthscale)
    assert searched.records[-1].loss < 0.2 * plain.records[-1].loss


@pytest.mark.slow
def test_failed_re_solve_after_learning_names_the_learned_hyperparameters(monkeypatch):
    # The re-solve from u = 0 fails: the after row falls back to the re-solve from the learner's
    # iterate, with a note. If that fails too, the error names the learned hyperparameters.
    import gpde.app._learn_run as learn_run
    from gpde import SolverError

    original = learn_run.resolve

    def failing(calls_that_fail):
        calls = []

        def resolve(*args):
            calls.append(1)
            if len(calls) in calls_that_fail:
                raise SolverError("Gauss-Newton step 2 failed: the Cholesky factorization of the Gram matrix failed")
            return original(*args)

        return resolve

    monkeypatch.setattr(learn_run, "resolve", failing({2}))  # call 2: the "after" re-solve from u = 0
    run = run_learn(NonlinearElliptic, _learn_config(gn_steps=1, inner_steps=2))
    assert "re-solve from u = 0 with the learned kernel failed" in run.after_note
    assert run.after == run.after_from_iterate_fields["errors"] and run.after["rms"] < run.before["rms"]
    assert run.record.groups[store.HISTORY] is not None
    monkeypatch.setattr(learn_run, "resolve", failing({2, 3}))  # and the fallback from the iterate
    with pytest.raises(SolverError, match=r"re-solve with the learned kernel failed.*log_lengthscale = .*Raise the nugget"):
        run_learn(NonlinearElliptic, _learn_config(gn_steps=1, inner_steps=2))


def test_learning_from_a_converged_first_iterate_stays_at_that_solution():
    # With the optimizer effectively off (learning rate 1e-12), each outer iteration is one
    # Gauss-Newton step of the initial kernel. From the converged solution that step changes
    # nothing; from u_0 = 0 the first step of this nonlinear problem is far from it.
    problem, train, validation = _small_elliptic()
    kernel = Gaussian(0.2)
    converged, history = GaussNewton(nugget=1e-10, max_steps=20).solve(kernel, train)
    assert history.converged
    learner = BilevelLearner(optimizer=optax.adam(1e-12), gn_steps=1, inner_steps=2, nugget=1e-10,
                             lengthscale_scan=False)
    points = train[0].points
    reference = np.asarray(converged(points))
    warm_result = learner.learn(kernel, train, validation, initial=converged)
    warm = warm_result.solution
    cold = learner.learn(kernel, train, validation).solution
    # Started at a tiny residual and stayed there: not divergence (the reference is u = 0's).
    assert warm_result.result == RESULTS.successful
    scale = np.max(np.abs(reference))
    assert np.max(np.abs(np.asarray(warm(points)) - reference)) < 1e-6 * scale
    assert np.max(np.abs(np.asarray(cold(points)) - reference)) > 1e-2 * scale


def test_update_steps_are_gauss_newton_steps_of_the_new_kernel():
    # With the optimizer off, one outer iteration with update_steps = 3 from u_0 = 0 is three
    # Gauss-Newton steps of the kernel from u = 0, the solver's own three steps.
    problem, train, validation = _small_elliptic()
    kernel = Gaussian(0.2)
    three, history = GaussNewton(nugget=1e-10, max_steps=3, tolerance=1e-300).solve(kernel, train)
    assert len(history.steps) == 3
    learner = BilevelLearner(optimizer=optax.sgd(0.0), gn_steps=1, inner_steps=1, nugget=1e-10,
                             lengthscale_scan=False, update_steps=3)
    learned = learner.learn(kernel, train, validation).solution
    one = BilevelLearner(optimizer=optax.sgd(0.0), gn_steps=1, inner_steps=1, nugget=1e-10,
                         lengthscale_scan=False).learn(kernel, train, validation).solution
    points = train[0].points
    reference = np.asarray(three(points))
    scale = np.max(np.abs(reference))
    assert np.max(np.abs(np.asarray(learned(points)) - reference)) < 1e-8 * scale
    assert np.max(np.abs(np.asarray(one(points)) - reference)) > 1e-3 * scale  # one step is not three
    with pytest.raises(ConfigError, match="update_steps"):
        BilevelLearner(update_steps=0)


@pytest.mark.slow  # ~20 s of learner compilation; run with -m slow
def test_start_steps_start_the_learner_from_the_initial_kernels_solution():
    # One outer iteration with the optimizer effectively off (and no scale search): the learner's
    # iterate is one more Gauss-Newton step after `start_steps` of them, i.e. the converged
    # solution of the initial kernel on the training points; one step from u = 0 is far from it.
    settings = dict(gn_steps=1, inner_steps=1, learning_rate=1e-12, scale_search=False, lengthscale=(0.2,))
    problem = NonlinearElliptic()
    config = _learn_config(start_steps=8, **settings)
    interior, boundary, _ = learning_points(problem, config)
    converged, history = GaussNewton(nugget=config.nugget, max_steps=20).solve(
        Gaussian(0.2), problem.training_constraints(interior, boundary))
    assert history.converged
    grid, _ = problem.domain.grid(config.grid)
    expected = error_metrics(converged(grid), problem.reference(np.asarray(grid)))["rms"]
    warm = float(run_learn(NonlinearElliptic, config).record.groups["history"]["rms"][-1])
    cold = float(run_learn(NonlinearElliptic, _learn_config(start_steps=0, **settings)).record.groups["history"]["rms"][-1])
    assert warm == pytest.approx(expected, rel=1e-6)
    assert abs(cold - expected) > expected


def test_learner_with_a_huge_lengthscale_ends_diverged_and_a_failed_step_names_its_result():
    """Elliptic, 100 + 40 grid points, ℓ = 1e3, the optimizer effectively off: the learner's
    Gauss-Newton step lands at a training residual RMS ~1e21 against ~600 for u = 0, so the
    result is `diverged`, not a completed schedule; with η = 1e-20 the step's Cholesky fails and
    the SolverError carries cholesky_failed."""
    problem = NonlinearElliptic()
    interior = problem.domain.interior_points(100, "grid", jax.random.PRNGKey(0))
    boundary = problem.domain.boundary_points(40, "grid", jax.random.PRNGKey(1))
    validation = problem.domain.interior_points(48, "random", jax.random.PRNGKey(2))
    train, held = problem.training_constraints(interior, boundary), problem.validation_constraints(validation, boundary)
    settings = dict(optimizer=optax.adam(1e-12), gn_steps=1, inner_steps=1, lengthscale_scan=False)
    result = BilevelLearner(nugget=1e-12, **settings).learn(Gaussian(1e3), train, held)
    assert result.result == RESULTS.diverged
    assert result.final_residual_rms > 1e3 * result.start_residual_rms
    with pytest.raises(SolverError, match="Cholesky") as info:
        BilevelLearner(nugget=1e-20, **settings).learn(Gaussian(1e3), train, held)
    assert info.value.result == RESULTS.cholesky_failed


def test_protocol_re_solve_from_zero_runs_the_problems_continuation():
    """The Eikonal default: the re-solves from u = 0 (before, after) go through ε = 0.3, 0.1, 0.03
    first, as the library's continuation solve does; from an initial solution, or with the
    continuation turned off, they do not."""
    from gpde.app._learn_run import resolve as protocol_resolve
    from gpde.problems.eikonal import CONTINUATION, Eikonal

    sizes = dict(kernel="gaussian", lengthscale=(0.2,), n_interior=36, n_boundary=16, n_validation=36, eval_steps=12)
    config = resolve("eikonal", Eikonal.learn_defaults, sizes, config_class=LearnConfig)
    assert config.continuation == CONTINUATION
    problem = Eikonal()
    interior, boundary, validation = learning_points(problem, config)
    solution, history = protocol_resolve(problem, Gaussian(0.2), interior, boundary, validation, config)
    assert len(history.continuation_steps) == 4 * len(CONTINUATION["epsilon"])
    points = jnp.concatenate([interior, validation])
    stages = [Eikonal(epsilon=e).constraints(points, boundary) for e in CONTINUATION["epsilon"]]
    expected, _ = GaussNewton(nugget=config.nugget, max_steps=12, tolerance=config.tolerance).solve(
        Gaussian(0.2), problem.constraints(points, boundary), continuation=stages, continuation_steps=4)
    np.testing.assert_allclose(np.asarray(solution(points)), np.asarray(expected(points)), rtol=1e-9, atol=1e-12)
    _, warm = protocol_resolve(problem, Gaussian(0.2), interior, boundary, validation, config, initial=solution)
    off = resolve("eikonal", Eikonal.learn_defaults, sizes, dict(continuation={}), config_class=LearnConfig)
    _, plain = protocol_resolve(problem, Gaussian(0.2), interior, boundary, validation, off)
    assert warm.continuation_steps == [] and plain.continuation_steps == []


def test_geometric_mean_square_loss_is_the_geometric_mean_of_the_squared_residuals(one_step_iterate):
    """The robust outer loss: Σ over constraints of exp(mean log r²), at most the arithmetic mean
    (AM-GM, equal only for equal |r|), its hypergradient matches a difference quotient, and it is
    the loss the learner minimizes when asked for."""
    train, validation, train_values, validation_values = one_step_iterate
    residuals_of = eqx.filter_jit(linearized_validation_residuals)
    loss_of = eqx.filter_jit(linearized_validation_loss)

    @jax.jit
    def loss(log_lengthscale):
        kernel = eqx.tree_at(lambda k: k.log_lengthscale, Gaussian(1.0), log_lengthscale)
        return linearized_validation_loss(kernel, train, validation, train_values, validation_values, 1e-4, True,
                                          "geometric-mean-square")

    at = jnp.log(0.4)
    residuals = residuals_of(Gaussian(0.4), train, validation, train_values, validation_values, 1e-4, True)
    by_hand = sum(np.exp(np.mean(np.log(np.asarray(r) ** 2))) for r in residuals)
    assert float(loss(at)) == pytest.approx(by_hand, rel=1e-10)
    assert float(loss(at)) < sum(np.mean(np.asarray(r) ** 2) for r in residuals)
    with pytest.raises(ConfigError, match="outer loss"):
        linearized_validation_loss(Gaussian(0.4), train, validation, train_values, validation_values, 1e-4, True,
                                   "median")
    # A smaller step than the mean-square test's: here the loss bends sharply within ±0.01 of
    # log ℓ (difference quotients at steps 1e-2, 3e-3, 1e-3 miss by 20 %, 7 %, 2e-4; at 1e-4 by 3e-8).
    step = 1e-4
    gradient = float(jax.jit(jax.grad(loss))(at))
    finite_difference = float((-loss(at + 2 * step) + 8 * loss(at + step) - 8 * loss(at - step)
                               + loss(at - 2 * step)) / (12 * step))
    assert gradient == pytest.approx(finite_difference, rel=1e-6)
    # The learner's first optimizer step evaluates the chosen loss at the initial kernel around u = 0.
    learner = BilevelLearner(gn_steps=1, inner_steps=1, nugget=1e-4, lengthscale_scan=False,
                             outer_loss="geometric-mean-square")
    first = learner.learn(Gaussian(0.4), train, validation).losses[0]
    zero = (train, validation, initial_values(train), initial_values(validation), 1e-4, True)
    assert first == pytest.approx(float(loss_of(Gaussian(0.4), *zero, "geometric-mean-square")), rel=1e-10)
    assert first != pytest.approx(float(loss_of(Gaussian(0.4), *zero, "mean-square")), rel=1e-3)
