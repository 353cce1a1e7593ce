"""Gram blocks of a kernel under linear operators: K(L₁, L₂)[a, b] = L₁ˣ L₂ʸ k(x_a, y_b).

Stationary and separable kernels are differentiated in closed form, and so are stationary kernels under a
coordinatewise input warp (an operator in x is one with per-point coefficients in the warped
coordinates); every other kernel by autodiff of its pointwise `pair` function in feature space
(`_feature_gram.py`), so every kernel gets every operator. The
per-point part of the kernel (its `features`: for the Gibbs kernel the network ℓ(x)) is evaluated
and differentiated ONCE PER POINT, and no network runs per pair of points.
"""

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..kernels import AbstractKernel, AbstractSeparableKernel, AbstractStationaryKernel, Gibbs, Scaled, Sum, Warped

from ._feature_gram import FeatureJets, feature_gram, feature_jets
from ._gibbs_gram import gibbs_gram
from ._operators import AbstractOperator
from ._separable_gram import separable_gram

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

    Stationary, separable and Gibbs kernels are differentiated in closed form, sums and scalings by linearity,
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
    if isinstance(kernel, AbstractSeparableKernel):
        return separable_gram(kernel, operators_x, points_x, operators_y, points_y)
    if isinstance(kernel, Warped) and _closed_form_warp(kernel):
        # Block (j, l) is the functional Gram of the one-hot weights on operators j (x) and l (y).
        both = tuple(operators_x) + tuple(operators_y)
        mx, my = len(operators_x), len(operators_y)
        ones_x, ones_y = jnp.ones((points_x.shape[0], 1)), jnp.ones((points_y.shape[0], 1))
        one_hot = jnp.eye(mx + my, dtype=points_x.dtype)
        return jnp.stack([
            jnp.stack([
                functional_gram(kernel, both, ones_x * one_hot[j], points_x, ones_y * one_hot[mx + l], points_y)
                for l in range(my)
            ])
            for j in range(mx)
        ])
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


def functional_gram(
    kernel: AbstractKernel,
    operators: Sequence[AbstractOperator],
    weights_x: Float[Array, "nx m"],
    points_x: Float[Array, "nx d"],
    weights_y: Float[Array, "ny m"],
    points_y: Float[Array, "ny d"],
) -> Float[Array, "nx ny"]:
    """The Gram matrix of weighted functionals φ_a = Σ_j w_aj L_j δ_{x_a}:
    out[a, b] = Σ_jl weights_x[a, j] weights_y[b, l] L_jˣ L_lʸ k(x_a, y_b).

    A weighted sum of constant-coefficient operators is an operator with per-point coefficients
    (c₀, c₁, C₂)_a = Σ_j w_aj (c₀, c₁, C₂)_j, so for stationary kernels the entry is ONE closed-form
    expression per pair (`_stationary_gram`'s terms with per-point coefficients), which XLA fuses
    into one pass over the pairs, instead of m² blocks summed afterwards. Other kernels sum the
    blocks of `operator_gram`.
    """
    operators = tuple(operators)
    if isinstance(kernel, Warped) and _closed_form_warp(kernel):
        inner, warp = kernel.kernel, kernel.warp
        if isinstance(inner, (Sum, Scaled)):  # a warp distributes over sums and scalings
            parts = inner.parts if isinstance(inner, Sum) else (inner.kernel,)
            scale = inner.variance if isinstance(inner, Scaled) else 1.0
            return scale * sum(
                functional_gram(Warped(part, warp), operators, weights_x, points_x, weights_y, points_y) for part in parts
            )
        mapped_x, first_x, second_x = warp.coordinate_jets(points_x)
        mapped_y, first_y, second_y = warp.coordinate_jets(points_y)
        return _stationary_functional_gram(
            inner, operators, weights_x, mapped_x, weights_y, mapped_y, (first_x, second_x), (first_y, second_y)
        )
    if not isinstance(kernel, AbstractStationaryKernel):
        if isinstance(kernel, Sum):
            return sum(functional_gram(p, operators, weights_x, points_x, weights_y, points_y) for p in kernel.parts)
        if isinstance(kernel, Scaled):
            return kernel.variance * functional_gram(kernel.kernel, operators, weights_x, points_x, weights_y, points_y)
        blocks = operator_gram(kernel, operators, points_x, operators, points_y)
        m = len(operators)
        return sum(weights_x[:, j, None] * blocks[j, l] * weights_y[None, :, l] for j in range(m) for l in range(m))
    return _stationary_functional_gram(kernel, operators, weights_x, points_x, weights_y, points_y)


def _closed_form_warp(kernel: Warped) -> bool:
    """Whether the warped kernel's Gram entries have the closed form: a coordinatewise warp of
    stationary kernels (through sums and scalings)."""
    if not kernel.warp.coordinatewise:
        return False

    def stationary(k):
        if isinstance(k, Sum):
            return all(stationary(p) for p in k.parts)
        if isinstance(k, Scaled):
            return stationary(k.kernel)
        return isinstance(k, AbstractStationaryKernel)

    return stationary(kernel.kernel)


def _stationary_functional_gram(kernel, operators, weights_x, points_x, weights_y, points_y, warp_x=None, warp_y=None):
    """`functional_gram` of a stationary kernel; `warp_x`/`warp_y` = (∂w_i/∂x_i, ∂²w_i/∂x_i²) per
    point and axis when the points are already mapped by a coordinatewise warp w: the operator
    (c₀, c₁, C₂) in x is then (c₀, J c₁ + diag(H) ⊙ diag(C₂), J C₂ J) in the warped coordinates
    (J = diag(∂w_i/∂x_i), H the second derivatives), per point."""
    dim = points_x.shape[1]
    table = [op.coefficients(dim) for op in operators]
    highest = 2 * max(_order(c) for c in table)
    lam = 2.0 / jnp.broadcast_to(jnp.exp(kernel.log_lengthscale), (dim,)) ** 2
    h = points_x.T[:, :, None] - points_y.T[:, None, :]  # (d, nx, ny)
    g = lam[:, None, None] * h
    k = kernel.profile_derivatives(jnp.sum(0.5 * g * h, axis=0), highest)
    k = k + [0.0] * (5 - len(k))

    def total(terms):  # None for an empty sum: that term is absent for every pair
        terms = list(terms)
        return sum(terms) if terms else None

    def per_point(weights, side, warp):
        """Per-point coefficients and their contractions with g, broadcasting against (nx, ny)
        (side 0: x, 1: y). Only coefficient entries that some operator uses appear."""
        def column(values):
            v = weights @ jnp.asarray(values, dtype=weights.dtype)
            return v[:, None] if side == 0 else v[None, :]

        def jet(array, i):
            return array[:, i, None] if side == 0 else array[None, :, i]

        c0 = column([c[0] for c in table]) if any(c[0] for c in table) else None
        c1 = {i: column([c[1][i] for c in table]) for i in range(dim) if any(c[1][i] for c in table)}
        c2 = {
            (i, j): column([c[2][i, j] for c in table])
            for i in range(dim) for j in range(dim) if any(c[2][i, j] for c in table)
        }
        if warp is not None:  # the operators in the warped coordinates (see the docstring)
            first, second = warp
            c1 = {
                i: total(
                    ([jet(first, i) * c1[i]] if i in c1 else []) + ([jet(second, i) * c2[i, i]] if (i, i) in c2 else [])
                )
                for i in range(dim) if i in c1 or (i, i) in c2
            }
            c2 = {(i, j): jet(first, i) * jet(first, j) * value for (i, j), value in c2.items()}
        mg = {i: total(c2[i, j] * g[j] for j in range(dim) if (i, j) in c2) for i in {i for i, _ in c2}}
        return {
            "c0": c0, "c1": c1, "c2": c2, "Mg": mg,
            "ug": total(c1[i] * g[i] for i in c1),
            "gMg": total(g[i] * mg[i] for i in mg),
            "trSM": total(lam[i] * c2[i, i] for i in range(dim) if (i, i) in c2),
        }

    a, b = per_point(weights_x, 0, warp_x), per_point(weights_y, 1, warp_y)
    zero = jnp.zeros(h.shape[1:], dtype=points_x.dtype)

    def v(x):  # an absent term is exactly zero
        return zero if x is None else x

    c0a, c0b, uga, ugb, gmga, gmgb, tra, trb = (
        v(a["c0"]), v(b["c0"]), v(a["ug"]), v(b["ug"]), v(a["gMg"]), v(b["gMg"]), v(a["trSM"]), v(b["trSM"])
    )
    first_order = bool(a["c1"])
    second_order = bool(a["c2"])
    value = c0a * c0b * k[0]
    if first_order:
        value = value + k[1] * (c0b * uga - c0a * ugb) - k[2] * uga * ugb
        value = value - k[1] * v(total(lam[i] * a["c1"][i] * b["c1"][i] for i in a["c1"]))
    if second_order:
        value = value + c0b * (k[2] * gmga + k[1] * tra) + c0a * (k[2] * gmgb + k[1] * trb)
        value = value + k[4] * gmga * gmgb + k[3] * (tra * gmgb + trb * gmga) + k[2] * tra * trb
        value = value + 4.0 * k[3] * v(total(a["Mg"][i] * lam[i] * b["Mg"][i] for i in a["Mg"]))
        value = value + 2.0 * k[2] * v(total(
            a["c2"][i, j] * lam[j] * b["c2"][j, i] * lam[i] for (i, j) in a["c2"] if (j, i) in b["c2"]
        ))
    if first_order and second_order:
        dot_b = v(total(lam[i] * b["c1"][i] * a["Mg"][i] for i in b["c1"] if i in a["Mg"]))
        dot_a = v(total(lam[i] * a["c1"][i] * b["Mg"][i] for i in a["c1"] if i in b["Mg"]))
        value = value - (k[3] * ugb * gmga + k[2] * (2.0 * dot_b + tra * ugb))
        value = value + (k[3] * uga * gmgb + k[2] * (2.0 * dot_a + trb * uga))
    return jnp.broadcast_to(value, h.shape[1:]).astype(points_x.dtype)
