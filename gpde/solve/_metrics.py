"""Error measures against a reference solution (docs/references.md: RMS, relative L2, L∞)."""

import numpy as np


def error_metrics(u: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """rms = sqrt(mean(err²)) (the research codes' "L2 error"), l2_relative = ‖err‖₂ / ‖ref‖₂,
    linf = max |err|, over the same points."""
    u, reference = np.asarray(u, dtype=float), np.asarray(reference, dtype=float)
    if u.shape != reference.shape:
        raise ValueError(f"solution shape {u.shape} differs from reference shape {reference.shape}")
    error = u - reference
    return {
        "rms": float(np.sqrt(np.mean(error**2))),
        "l2_relative": float(np.linalg.norm(error) / np.linalg.norm(reference)),
        "linf": float(np.max(np.abs(error))),
    }
