"""Reference solution of the focusing cubic nonlinear Schrödinger equation on a periodic interval,

    i h_t + ½ h_xx + |h|² h = 0,   x ∈ [a, a + L) periodic,   h(0, x) = h₀(x),

by split-step Fourier: the linear part i h_t + ½ h_xx = 0 is exact in Fourier space (ĥ_k ↦
e^{−i k² τ/2} ĥ_k), the nonlinear part i h_t + |h|² h = 0 is exact pointwise (|h| is constant along
it: h ↦ h e^{i |h|² τ}), and the two are composed by Strang splitting (second order) inside
Yoshida's fourth-order triple jump. Pure numpy, float64; independent of the GP solver.

Values are wanted at scattered times (collocation points, test grids), and the solution is not
smooth in t in a way that polynomial interpolation could exploit (the periodic extension of
2 sech x has a kink at x = ±5 whose dispersive waves oscillate in time like e^{−ik²t/2}), so the
integration stops at every requested time and values in x come from the trigonometric interpolant
of the grid solution. The kink also limits convergence in x to algebraic orders (Fourier
coefficients ~ 1/k²): the refinement table (`python -m problems._schrodinger_reference`) shows
what that costs.
"""

from __future__ import annotations

import numpy as np

#: Defaults: Fourier modes and the largest time step of the fourth-order composition.
MODES = 1024
TIME_STEP = 1e-3

# Yoshida's triple jump: three Strang steps of lengths w₁τ, w₀τ, w₁τ give fourth order.
_W1 = 1.0 / (2.0 - 2.0 ** (1.0 / 3.0))
_W0 = 1.0 - 2.0 * _W1


def nls_split_step(
    initial, t: np.ndarray, x: np.ndarray, lower: float, length: float,
    modes: int = MODES, time_step: float = TIME_STEP,
) -> np.ndarray:
    """h(t_i, x_i) (complex, shape (n,)) for the initial function `initial` (vectorized numpy)."""
    t, x = np.asarray(t, float), np.asarray(x, float)
    if np.any(t < 0):
        raise ValueError("the Schrödinger reference starts at t = 0; got negative times")
    nodes = lower + length * np.arange(modes) / modes
    k = 2.0 * np.pi * np.fft.fftfreq(modes, d=length / modes)
    h = np.asarray(initial(nodes), dtype=complex)

    def strang(h, tau):
        h = h * np.exp(1j * np.abs(h) ** 2 * (tau / 2))
        h = np.fft.ifft(np.exp(-0.5j * k**2 * tau) * np.fft.fft(h))
        return h * np.exp(1j * np.abs(h) ** 2 * (tau / 2))

    def advance(h, span):
        if span <= 0:
            return h
        steps = int(np.ceil(span / time_step - 1e-12))
        tau = span / steps
        for _ in range(steps):
            h = strang(strang(strang(h, _W1 * tau), _W0 * tau), _W1 * tau)
        return h

    values = np.empty(t.shape, dtype=complex)
    order = np.argsort(t, kind="stable")
    now, current_t = h, 0.0
    times, starts = np.unique(t[order], return_index=True)
    bounds = list(starts[1:]) + [t.size]
    for time, start, stop in zip(times, starts, bounds):
        now = advance(now, time - current_t)
        current_t = time
        which = order[start:stop]
        coefficients = np.fft.fft(now) / modes
        # Symmetric trigonometric interpolant (the Nyquist mode split evenly between ±k).
        phases = np.exp(1j * np.outer(x[which] - lower, k))
        nyquist = modes // 2 if modes % 2 == 0 else None
        weights = np.ones(modes)
        if nyquist is not None:
            weights[nyquist] = 0.0
            values[which] = phases @ (weights * coefficients) + coefficients[nyquist] * np.cos(
                np.pi * modes * (x[which] - lower) / length)
        else:
            values[which] = phases @ coefficients
    return values


def two_sech(x):
    """h(0, x) = 2 sech x."""
    return 2.0 / np.cosh(x)


if __name__ == "__main__":
    tt, xx = np.meshgrid(np.linspace(0, 1, 101), np.linspace(-5, 5, 129)[:-1], indexing="ij")
    t, x = tt.ravel(), xx.ravel()
    fine = nls_split_step(two_sech, t, x, -5.0, 10.0, modes=4096, time_step=2.5e-4)
    for modes, step in ((512, 1e-3), (1024, 1e-3), (2048, 1e-3), (1024, 2e-3), (2048, 5e-4)):
        d = nls_split_step(two_sech, t, x, -5.0, 10.0, modes=modes, time_step=step) - fine
        print(f"N = {modes:5d}, τ = {step:.1e}: vs N = 4096, τ = 2.5e-4: max |Δh| {np.abs(d).max():.2e}, "
              f"RMS Δu {np.sqrt(np.mean(d.real**2)):.2e}, RMS Δv {np.sqrt(np.mean(d.imag**2)):.2e}")
