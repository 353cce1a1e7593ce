"""Gram blocks of separable kernels, k(x, y) = Π_i φ_i(x_i − y_i), in closed form.

An operator L = (c₀, c₁, C₂) of order ≤ 2 (`AbstractOperator.coefficients`) acting on x is the
polynomial c₀ + Σ_i c₁ᵢ ∂_i + Σ_ij C₂ᵢⱼ ∂_i ∂_j in the derivatives ∂ = ∂/∂h of k(h), h = x − y; acting
on y it is the same with ∂_y = −∂_h. So L₁ˣ L₂ʸ k = Σ_α a_α ∂^α k with static numbers a_α (the
product of the two polynomials, built once per pair of operators when tracing), and for a separable
kernel ∂^α k(h) = Π_i φ_i^(α_i)(h_i). Per pair of points that is a few products of the factors'
derivatives (`AbstractSeparableKernel.factor_derivatives`), all as whole (nx, ny) arrays that XLA
fuses, instead of nested autodiff of k per pair; the reverse pass for kernel learning is as cheap.
"""

from collections.abc import Sequence

import jax.numpy as jnp
from jaxtyping import Array, Float

from ..kernels import AbstractSeparableKernel

from ._operators import AbstractOperator

#: A polynomial in the derivatives ∂^α: multi-index α (tuple of counts per dimension) → coefficient.
Polynomial = dict[tuple[int, ...], float]


def _operator_polynomial(coefficients, dim: int, sign: float) -> Polynomial:
    """c₀ + Σ c₁ᵢ (sign ∂ᵢ) + Σ C₂ᵢⱼ (sign ∂ᵢ)(sign ∂ⱼ) as a polynomial in ∂ = ∂/∂h."""
    c0, c1, c2 = coefficients
    polynomial: Polynomial = {}

    def add(alpha, value):
        if value:
            polynomial[alpha] = polynomial.get(alpha, 0.0) + float(value)

    add((0,) * dim, c0)
    for i in range(dim):
        add(tuple(int(k == i) for k in range(dim)), sign * c1[i])
        for j in range(dim):
            add(tuple(int(k == i) + int(k == j) for k in range(dim)), c2[i, j])
    return polynomial


def operator_product(coefficients_x, coefficients_y, dim: int) -> Polynomial:
    """The derivative polynomial of L₁ˣ L₂ʸ acting on k(h), h = x − y (module docstring)."""
    left = _operator_polynomial(coefficients_x, dim, 1.0)
    right = _operator_polynomial(coefficients_y, dim, -1.0)
    product: Polynomial = {}
    for alpha, a in left.items():
        for beta, b in right.items():
            gamma = tuple(p + q for p, q in zip(alpha, beta))
            product[gamma] = product.get(gamma, 0.0) + a * b
    return {alpha: value for alpha, value in product.items() if value}


def separable_gram(
    kernel: AbstractSeparableKernel,
    operators_x: Sequence[AbstractOperator],
    points_x: Float[Array, "nx d"],
    operators_y: Sequence[AbstractOperator],
    points_y: Float[Array, "ny d"],
) -> Float[Array, "mx my nx ny"]:
    """out[j, l, a, b] = L_jˣ L_lʸ k(x_a, y_b) for a separable kernel (module docstring)."""
    dim = points_x.shape[1]
    products = [
        [operator_product(op_x.coefficients(dim), op_y.coefficients(dim), dim) for op_y in operators_y]
        for op_x in operators_x
    ]
    order = max((max(alpha) for row in products for product in row for alpha in product), default=0)
    h = points_x.T[:, :, None] - points_y.T[:, None, :]  # (d, nx, ny)
    factors = kernel.factor_derivatives(h, int(order))

    def block(product: Polynomial):
        total = jnp.zeros(h.shape[1:], dtype=points_x.dtype)
        for alpha, coefficient in product.items():
            term = coefficient * factors[0][alpha[0]]
            for i in range(1, dim):
                term = term * factors[i][alpha[i]]
            total = total + term
        return total

    return jnp.stack([jnp.stack([block(product) for product in row]) for row in products])

