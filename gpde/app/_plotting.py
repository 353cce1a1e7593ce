"""Figures from result files (used by `gpde plot` and the notebooks). Reads only what the file
holds: nothing is recomputed inside a plot."""

from pathlib import Path

import numpy as np

from ..io import _store as store

LENGTHSCALE = "lengthscale"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display is assumed
    import matplotlib.pyplot as plt

    return plt


def plot_fields(run: store.RunFile, out: str | Path) -> Path:
    """Solution, reference and error maps of a 2-D run, written to `out` (PNG, PDF, …); for a
    multi-field run also each further field, its reference and error (one row per field), and
    the observation locations of an inverse problem."""
    plt = _pyplot()
    fields = run.groups[store.FIELDS]
    points = fields[store.GRID_POINTS]
    shape = tuple(run.group_attrs[store.FIELDS][store.GRID_SHAPE])
    if len(shape) != 2:
        raise ValueError(f"field maps need a 2-D evaluation grid, this run has shape {shape}")
    x = points[:, 0].reshape(shape)
    y = points[:, 1].reshape(shape)
    errors = run.group_attrs.get(store.ERRORS, {})
    panels = [
        (store.U, "gpde solution u", "viridis"),
        (store.U_REF, "reference", "viridis"),
        (store.ERROR, "error u − u_ref", "RdBu_r"),
    ]
    # Further fields of a multi-field problem (e.g. Darcy's a): value, reference and error.
    others = sorted(key[len(store.ERROR) + 1:] for key in fields if key.startswith(f"{store.ERROR}_"))
    for field in others:
        value, reference, error, _ = store.field_names(field, False)
        panels += [(value, f"gpde solution {field}", "viridis"), (reference, f"reference {field}", "viridis"),
                   (error, f"error {field} − {field}_ref", "RdBu_r")]
    # Learning results also hold the learned Gibbs lengthscale field (one map per dimension).
    lengthscale = fields.get(LENGTHSCALE)
    if lengthscale is not None:
        for i in range(lengthscale.shape[-1]):
            panels.append((f"{LENGTHSCALE}:{i}", f"learned lengthscale ℓ_{i}(x)", "magma"))
    columns = 3 if others else len(panels)
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5 * columns, 4.2 * rows), constrained_layout=True,
                                squeeze=False)
    axes = axes.ravel()
    for axis in axes[len(panels):]:
        axis.set_visible(False)
    for axis, (name, title, colormap) in zip(axes, panels):
        if name.startswith(LENGTHSCALE):
            values = lengthscale[..., int(name.split(":")[1])]
        else:
            values = fields[name]
        if name == store.ERROR or name.startswith(f"{store.ERROR}_"):
            limit = float(np.max(np.abs(values))) or 1.0
            image = axis.pcolormesh(x, y, values, cmap=colormap, vmin=-limit, vmax=limit, shading="auto")
        else:
            image = axis.pcolormesh(x, y, values, cmap=colormap, shading="auto")
        figure.colorbar(image, ax=axis)
        axis.set_title(title)
        axis.set_aspect("auto")
        axis.set_xlabel("coordinate 0")
        axis.set_ylabel("coordinate 1")
    for name, marker in (("interior", "."), ("boundary", "x")):
        pts = run.groups.get(store.POINTS, {}).get(name)
        if pts is not None:
            axes[0].plot(pts[:, 0], pts[:, 1], marker, color="k", markersize=1.5, alpha=0.4)
    # Observation locations of an inverse problem, on the solution and on every other field.
    observations = run.groups.get(store.POINTS, {}).get("observations")
    if observations is not None:
        for axis, (name, _, _) in zip(axes, panels):
            if name == store.U or name in others:
                axis.plot(observations[:, 0], observations[:, 1], "o", markerfacecolor="none", markeredgecolor="r",
                          markersize=4, label="observations")
        axes[0].legend(loc="upper right", fontsize=7)
    figure.suptitle(
        f"{run.problem}: RMS {errors.get('rms', float('nan')):.3g}, "
        f"rel. L2 {errors.get('l2_relative', float('nan')):.3g}, L∞ {errors.get('linf', float('nan')):.3g}"
    )
    out = Path(out)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out
