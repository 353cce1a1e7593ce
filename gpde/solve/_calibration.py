"""How well a posterior standard deviation predicts the actual error against a reference.

With error e = mean − reference and standard deviation σ at each evaluation point, a calibrated
Gaussian posterior has standardized errors e/σ distributed as N(0, 1): |e| ≤ zσ at 68.3 / 95.4 /
99.7 % of the points for z = 1 / 2 / 3, mean 0 and spread 1. Coverage above nominal (spread < 1)
is under-confidence (σ too large), below nominal over-confidence. The Gaussian negative
log-likelihood rewards both small errors and honest σ.
"""

import math
from dataclasses import asdict, dataclass

import numpy as np
from jaxtyping import Array, Float
from jax.scipy.special import ndtri

#: The ideal coverage of |e| ≤ zσ, z = 1, 2, 3, for standard normal errors.
NOMINAL_COVERAGE = tuple(math.erf(z / math.sqrt(2.0)) for z in (1, 2, 3))

#: The 2σ coverage that counts as calibrated: around the nominal 0.954, wide enough for the
#: sampling spread of a coverage over a few hundred correlated grid points.
COVERAGE_2_GOAL = (0.90, 0.99)


def coverage_verdict(coverage_2: float) -> str:
    """'over-confident' (σ too small), 'calibrated' or 'under-confident' (σ too large): where a 2σ
    coverage lies relative to COVERAGE_2_GOAL."""
    if coverage_2 < COVERAGE_2_GOAL[0]:
        return "over-confident"
    if coverage_2 > COVERAGE_2_GOAL[1]:
        return "under-confident"
    return "calibrated"


@dataclass(frozen=True)
class Calibration:
    """Calibration numbers over the points with σ > 0 (`points`; `zero_std` points where σ = 0
    are left out: there the posterior claims exactness and e/σ is undefined).

    coverage_z: fraction with |e| ≤ zσ; z_mean, z_std: mean and standard deviation of e/σ;
    nll: mean of ½ log(2πσ²) + ½ (e/σ)² (per point, in nats)."""

    coverage_1: float
    coverage_2: float
    coverage_3: float
    z_mean: float
    z_std: float
    nll: float
    points: int
    zero_std: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)

    @property
    def verdict(self) -> str:
        """`coverage_verdict` of the 2σ coverage."""
        return coverage_verdict(self.coverage_2)


def calibration(
    mean: Float[Array, "..."], std: Float[Array, "..."], reference: Float[Array, "..."]
) -> Calibration:
    """Coverage at 1/2/3σ, standardized-error mean and spread, and Gaussian NLL of `mean ± std`
    against `reference` (arrays of one shape, flattened)."""
    error, std = _error_and_std(mean, std, reference)
    positive = std > 0
    if not np.any(positive):
        raise ValueError("calibration needs at least one point with a positive standard deviation")
    error, std = error[positive], std[positive]
    z = error / std
    coverage = [float(np.mean(np.abs(z) <= level)) for level in (1, 2, 3)]
    nll = float(np.mean(0.5 * np.log(2.0 * np.pi * std**2) + 0.5 * z**2))
    return Calibration(*coverage, float(np.mean(z)), float(np.std(z)), nll, int(z.size),
                       int(positive.size - z.size))


def reliability(
    mean: Float[Array, "..."], std: Float[Array, "..."], reference: Float[Array, "..."],
    probabilities: Float[Array, " p"],
) -> Float[Array, " p"]:
    """The observed fraction of points inside the central interval of each nominal probability p,
    |e| ≤ Φ⁻¹((1 + p)/2) σ, over the points with σ > 0: a reliability diagram plots it against p
    (the diagonal is perfect calibration; below it, over-confidence)."""
    error, std = _error_and_std(mean, std, reference)
    positive = std > 0
    z = np.abs(error[positive] / std[positive])
    levels = np.asarray(ndtri((1.0 + np.asarray(probabilities, dtype=float)) / 2.0))
    return np.mean(z[None, :] <= levels[:, None], axis=1)


def _error_and_std(mean, std, reference):
    mean, std, reference = (np.asarray(a, dtype=float).ravel() for a in (mean, std, reference))
    if not (mean.shape == std.shape == reference.shape):
        raise ValueError(f"mean, std and reference must have one shape, got {mean.shape}, {std.shape}, {reference.shape}")
    if np.any(std < 0) or not np.all(np.isfinite(std)):
        raise ValueError("standard deviations must be finite and >= 0")
    return mean - reference, std
