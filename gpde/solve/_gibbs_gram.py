"""Closed-form Gram blocks of the Gibbs kernel under operators of order ≤ 2.

With a = ℓ(x), b = ℓ(y), h = x − y, the Gibbs kernel is k = exp(Φ), Φ = Σ_i ψ(h_i, a_i, b_i),

    ψ(h, a, b) = ½ log 2 + G(a, b) − h² r(a, b),   G = ½ log a + ½ log b − ½ log(a² + b²),
    r = 1 / (a² + b²),

which is QUADRATIC in h. In feature space (`_feature_gram.py`) every operator is a sum of
directional derivatives (order ≤ 2) along per-point directions t = (ξ_t, α_t): ξ_t the (static)
position part, α_t the per-point lengthscale part (ℓ's Jacobian and Hessian applied to the operator's
coefficients). On a pair, an x direction acts as ξ ∂_h + α ∂_a and a y direction as −ξ ∂_h + β ∂_b.

So every block entry is k times a moment M(S) = D_S k / k of a multiset S of at most two x and two y
directions, and the moments follow from the cumulants K(B) = D_B Φ by the recursion
M(S) = Σ_{B ⊆ S, B ∋ s₁} K(B) M(S \\ B). Because ψ is quadratic in h, a cumulant of a multiset with
p x- and q y-directions has at most 1 + |B| + C(|B|, 2) terms: products of per-point components
times ∂_a^p ∂_b^q G − h² ∂_a^p ∂_b^q r, −2h ∂^{…} r or −2 ∂^{…} r. Zero position components (∂₁ has
ξ = e₁, so it does not move h₀) drop out before tracing. The result, for the Eikonal operators
(∂₀, ∂₁, Δ) × (∂₀, ∂₁, Δ) on 900 points: ~730 flops per pair for all nine blocks (XLA cost
analysis; the general path of `_feature_gram.py` needs ~7000), compile in ~9 s instead of minutes, and
gradients that reach the network through the per-point α. The reverse pass, what a learning step
spends, runs over tiles of x-points (`_tiled_vjp.py`): plain reverse mode moved 33 GB through
memory per Eikonal learning step and took 9x the forward pass; tiled, the step is ~3x faster and
needs a third of the memory (benchmarks/learn-published.md).
"""

import itertools

import jax.numpy as jnp
import numpy as np

from ..kernels import Gibbs

from ._feature_gram import Plan, feature_jets
from ._tiled_vjp import tiled_vjp


def _pair_tables(a, b):
    """∂_a^p ∂_b^q of G(a, b) = ½ log a + ½ log b − ½ log(a² + b²) and of r = 1 / (a² + b²) for
    p, q ≤ 2, in closed form (elementwise; G[0, 0] is not needed and left out)."""
    r = 1.0 / (a**2 + b**2)
    r2, r3 = r * r, r * r * r
    ab = a * b
    rr = {
        (0, 0): r,
        (1, 0): -2.0 * a * r2,
        (0, 1): -2.0 * b * r2,
        (2, 0): -2.0 * r2 + 8.0 * a**2 * r3,
        (0, 2): -2.0 * r2 + 8.0 * b**2 * r3,
        (1, 1): 8.0 * ab * r3,
        (2, 1): 8.0 * b * r3 - 48.0 * a * ab * r3 * r,
        (1, 2): 8.0 * a * r3 - 48.0 * b * ab * r3 * r,
        (2, 2): -40.0 * r3 + 384.0 * ab * ab * r3 * r2,
    }
    g = {
        (1, 0): 0.5 / a - a * r,
        (0, 1): 0.5 / b - b * r,
        (2, 0): -0.5 / a**2 - r + 2.0 * a**2 * r2,
        (0, 2): -0.5 / b**2 - r + 2.0 * b**2 * r2,
        (1, 1): 2.0 * ab * r2,
        (2, 1): 2.0 * b * r2 - 8.0 * a * ab * r3,
        (1, 2): 2.0 * a * r2 - 8.0 * b * ab * r3,
        (2, 2): -6.0 * r2 + 48.0 * ab * ab * r2 * r2,
    }
    return g, rr


#: x-points per tile of the reverse pass (`_tiled_vjp.py`). Measured on the Eikonal Gibbs learning
#: step (900 + 300 + 900 points, 2 cores, another job running): gradient 4.4 s untiled, 2.0 s with
#: 16 rows, 2.3 s with 32, 2.1 s with 64 (a 16 × 1200 intermediate is 150 kB: cache-sized).
TILE_ROWS = 16


def gibbs_gram(kernel: Gibbs, operators_x, points_x, operators_y, points_y, jets_x=None, jets_y=None,
               tile_rows: int | None = TILE_ROWS):
    """out[j, l, a, b] = L_jˣ L_lʸ k(x_a, y_b) for the Gibbs kernel, in closed form (module
    docstring). Same contract as `operator_gram`; `tile_rows` x-points per tile of the reverse
    pass, or None for plain reverse mode (which also allows forward mode)."""
    dim = points_x.shape[1]
    if jets_x is None:
        jets_x = feature_jets(kernel, points_x)
    if jets_y is None:
        jets_y = feature_jets(kernel, points_y)
    plan_x, plan_y = Plan(operators_x, dim, curved=True), Plan(operators_y, dim, curved=True)
    # Features are (x, ℓ(x)) flattened: the position part of every direction is the static vector
    # of its source (J = [I; ∇ℓ], and x has no Hessian), the lengthscale part varies per point.
    xi_x = [np.asarray(a, float) for a, _ in plan_x.sources]
    xi_y = [-np.asarray(a, float) for a, _ in plan_y.sources]
    alpha = plan_x.directions(jets_x, points_x)[:, :, dim:]  # (nx, qx, d)
    beta = plan_y.directions(jets_y, points_y)[:, :, dim:]  # (ny, qy, d)
    ell_x, ell_y = jets_x.value[:, dim:], jets_y.value[:, dim:]
    if kernel.shared_lengthscale:
        # One ℓ for every dimension: its columns (and those of α, β) are copies, so keep one and
        # build the per-pair lengthscale tables and direction products once instead of per dimension.
        ell_x, ell_y, alpha, beta = ell_x[:, :1], ell_y[:, :1], alpha[:, :, :1], beta[:, :, :1]

    def blocks(x_side, y_side):
        (points_x, ell_x, alpha), (points_y, ell_y, beta) = x_side, y_side
        columns = ell_x.shape[1]
        pair_tables = [_pair_tables(ell_x[:, None, c], ell_y[None, :, c]) for c in range(columns)]
        log_prefactors = [0.5 * jnp.log(2.0 * ell_x[:, None, c] * ell_y[None, :, c] * r[0, 0])
                          for c, (_, r) in enumerate(pair_tables)]
        log_k = 0.0
        tables = []
        for i in range(dim):
            c = min(i, columns - 1)
            h = points_x[:, None, i] - points_y[None, :, i]
            g, r = pair_tables[c]
            log_k = log_k + log_prefactors[c] - h**2 * r[0, 0]
            tables.append((h, g, r))

        def component(element, i):
            side, t = element
            c = min(i, columns - 1)
            return alpha[:, None, t, c] if side == "x" else beta[None, :, t, c]

        def position(element, i):
            side, t = element
            return xi_x[t][i] if side == "x" else xi_y[t][i]

        products = {}

        def product(elements, i):
            key = (tuple(sorted(elements)), min(i, columns - 1))
            if key not in products:
                out = 1.0
                for e in key[0]:
                    out = out * component(e, i)
                products[key] = out
            return products[key]

        cumulants = {}

        def cumulant(elements):
            key = tuple(sorted(elements))
            if key not in cumulants:
                p = sum(side == "x" for side, _ in key)
                q = len(key) - p
                total = 0.0
                for i in range(dim):
                    h, g, r = tables[i]
                    total = total + product(key, i) * (g[p, q] - h**2 * r[p, q])
                    for n, e in enumerate(key):
                        xi = position(e, i)
                        if xi:
                            rest = key[:n] + key[n + 1 :]
                            pr = p - (e[0] == "x")
                            total = total + xi * product(rest, i) * (-2.0 * h) * r[pr, q - (e[0] == "y")]
                    for n, m in itertools.combinations(range(len(key)), 2):
                        xi = position(key[n], i) * position(key[m], i)
                        if xi:
                            rest = tuple(e for o, e in enumerate(key) if o not in (n, m))
                            pr = p - (key[n][0] == "x") - (key[m][0] == "x")
                            qr = q - (key[n][0] == "y") - (key[m][0] == "y")
                            total = total + xi * product(rest, i) * (-2.0) * r[pr, qr]
                cumulants[key] = total
            return cumulants[key]

        moments = {(): 1.0}

        def moment(elements):
            key = tuple(sorted(elements))
            if key not in moments:
                first, others = key[0], key[1:]
                total = 0.0
                for size in range(len(others) + 1):
                    for chosen in itertools.combinations(range(len(others)), size):
                        block = (first,) + tuple(others[o] for o in chosen)
                        rest = tuple(e for o, e in enumerate(others) if o not in chosen)
                        total = total + cumulant(block) * moment(rest)
                moments[key] = total
            return moments[key]

        k = jnp.exp(log_k)
        rows = []
        for terms_x in plan_x.terms:
            row = []
            for terms_y in plan_y.terms:
                entry = 0.0
                for cx, ix in terms_x:
                    for cy, iy in terms_y:
                        entry = entry + cx * cy * moment(tuple(("x", t) for t in ix) + tuple(("y", t) for t in iy))
                row.append(jnp.broadcast_to(k * entry, k.shape))
            rows.append(jnp.stack(row))
        return jnp.stack(rows)

    x_side, y_side = (points_x, ell_x, alpha), (points_y, ell_y, beta)
    if tile_rows is None:
        return blocks(x_side, y_side)
    return tiled_vjp(blocks, tile_rows)(x_side, y_side)
