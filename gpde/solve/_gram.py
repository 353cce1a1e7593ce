"""Gram blocks of a kernel under linear operators: K(L₁, L₂)[a, b] = L₁ˣ L₂ʸ k(x_a, y_b).

Stationary kernels are differentiated in closed form; every other kernel by autodiff of its pointwise
`pair` function in feature space (`_feature_gram.py`), so every kernel gets every operator. The
per-point part of the kernel (its `features`: for the Gibbs kernel the network ℓ(x)) is evaluated
and differentiated ONCE PER POINT, and no network runs per pair of points.
"""

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..kernels import AbstractKernel, AbstractStationaryKernel, Gibbs, Scaled, Sum

from ._feature_gram import FeatureJets, feature_gram, feature_jets
from ._gibbs_gram import gibbs_gram
from ._operators import AbstractOperator

__all__ = ["FeatureJets", "feature_jets", "operator_gram"]


def operator_gram(
    kernel: AbstractKernel,
    operators_x: Sequence[AbstractOperator],
    points_x: Float[Array, "nx d"],
    operators_y: Sequence[AbstractOperator],
    points_y: Float[Array, "ny d"],
    jets_x: FeatureJets | None = None,
    jets_y: FeatureJets | None = None,
) -> Float[Array, "mx my nx ny"]:
    """All Gram blocks between the operator lists: out[j, l, a, b] = L_jˣ L_lʸ k(x_a, y_b).

    Stationary and Gibbs kernels are differentiated in closed form, sums and scalings by linearity,
    every other kernel by directional derivatives in feature space (`feature_gram`). Pass `jets_x`/`jets_y`
    (from `feature_jets`) to reuse per-point work across calls.
    """
    if isinstance(kernel, AbstractStationaryKernel):
        return _stationary_gram(kernel, operators_x, points_x, operators_y, points_y)
    if isinstance(kernel, Sum):
        return sum(operator_gram(part, operators_x, points_x, operators_y, points_y) for part in kernel.parts)
    if isinstance(kernel, Scaled):
        return kernel.variance * operator_gram(kernel.kernel, operators_x, points_x, operators_y, points_y)
    if isinstance(kernel, Gibbs):
        return gibbs_gram(kernel, operators_x, points_x, operators_y, points_y, jets_x, jets_y)
    return feature_gram(kernel, operators_x, points_x, operators_y, points_y, jets_x, jets_y)


def _order(coefficients):
    _, c1, c2 = coefficients
    return 2 if np.any(c2) else 1 if np.any(c1) else 0


def _stationary_gram(kernel, operators_x, points_x, operators_y, points_y):
    """Closed-form L₁ˣ L₂ʸ κ(s) for k = κ(s), s = Σ h_i² / ℓ_i², h = x − y.

    With g = ∇_h s = Λh and ∇²_h s = Λ = diag(2/ℓ²), the chain rule (Faà di Bruno) gives every
    derivative of order ≤ 4 from the derivatives κ⁽ᵐ⁾ of the profile; ∂_y = −∂_h. With
    L₁ = (c₀, c₁, C₂) and L₂ = (e₀, e₁, E₂) (AbstractOperator.coefficients) the entry is the sum
    over derivative orders p (in x) and q (in y) of (−1)^q ⟨(L₁)_p ⊗ (L₂)_q, D^{p+q}⟩, each
    contraction written out below. All pairs are processed as whole (nx, ny) arrays, which XLA
    fuses into a few passes: tens of flops per pair and block instead of nested autodiff.
    """
    dim = points_x.shape[1]
    coefficients_x = [op.coefficients(dim) for op in operators_x]
    coefficients_y = [op.coefficients(dim) for op in operators_y]
    highest = max(_order(c) for c in coefficients_x) + max(_order(c) for c in coefficients_y)
    lam = 2.0 / jnp.broadcast_to(jnp.exp(kernel.log_lengthscale), (dim,)) ** 2
    h = points_x.T[:, :, None] - points_y.T[:, None, :]  # (d, nx, ny)
    g = lam[:, None, None] * h
    k = kernel.profile_derivatives(jnp.sum(0.5 * g * h, axis=0), highest)
    k = k + [0.0] * (5 - len(k))

    def dot(u, v):  # Σ_i u_i v_i over the leading (dimension) axis
        return sum(u[i] * v[i] for i in range(dim))

    def summaries(c):
        c0, c1, c2 = c
        mg = [sum(c2[i, j] * g[j] for j in range(dim) if c2[i, j]) for i in range(dim)]
        return {
            "c0": c0, "c1": c1, "c2": c2, "has1": bool(np.any(c1)), "has2": bool(np.any(c2)),
            "ug": sum(c1[i] * g[i] for i in range(dim) if c1[i]),
            "Mg": mg, "gMg": sum(g[i] * mg[i] for i in range(dim) if np.any(c2[i])),
            "trSM": jnp.sum(lam * np.diagonal(c2)),
        }

    def entry(a, b):
        value = 0.0
        if a["c0"] and b["c0"]:
            value += a["c0"] * b["c0"] * k[0]
        if b["c0"] and a["has1"]:
            value += b["c0"] * k[1] * a["ug"]
        if a["c0"] and b["has1"]:
            value -= a["c0"] * k[1] * b["ug"]
        if b["c0"] and a["has2"]:
            value += b["c0"] * (k[2] * a["gMg"] + k[1] * a["trSM"])
        if a["c0"] and b["has2"]:
            value += a["c0"] * (k[2] * b["gMg"] + k[1] * b["trSM"])
        if a["has1"] and b["has1"]:
            value -= k[2] * a["ug"] * b["ug"] + k[1] * jnp.dot(a["c1"], lam * b["c1"])
        if a["has2"] and b["has1"]:
            value -= k[3] * b["ug"] * a["gMg"] + k[2] * (2.0 * dot(lam * b["c1"], a["Mg"]) + a["trSM"] * b["ug"])
        if a["has1"] and b["has2"]:
            value += k[3] * a["ug"] * b["gMg"] + k[2] * (2.0 * dot(lam * a["c1"], b["Mg"]) + b["trSM"] * a["ug"])
        if a["has2"] and b["has2"]:
            value += (
                k[4] * a["gMg"] * b["gMg"]
                + k[3] * (a["trSM"] * b["gMg"] + b["trSM"] * a["gMg"] + 4.0 * dot(a["Mg"], [lam[i] * b["Mg"][i] for i in range(dim)]))
                + k[2] * (a["trSM"] * b["trSM"] + 2.0 * jnp.sum((a["c2"] * lam[None, :]) * (b["c2"] * lam[None, :]).T))
            )
        return jnp.broadcast_to(value, h.shape[1:]).astype(points_x.dtype)

    sx = [summaries(c) for c in coefficients_x]
    sy = [summaries(c) for c in coefficients_y]
    return jnp.stack([jnp.stack([entry(a, b) for b in sy]) for a in sx])
