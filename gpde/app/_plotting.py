"""Figures from result files (used by `gpde plot` and the notebooks). Reads only what the file
holds: nothing is recomputed inside a plot."""

from pathlib import Path

import numpy as np

from .._errors import ConfigError
from ..io import _schema as schema
from ..io import _store as store
from ..io import atomic_path
from ._run import uncertainty_names

LENGTHSCALE = schema.LENGTHSCALE
# Panel names of |error| / σ maps ("ratio:u"), computed from the stored error and σ.
_RATIO = "ratio"
#: Figure formats by file suffix (matplotlib's, without the rarely installed ones).
FORMATS = ("png", "pdf", "svg", "svgz", "eps", "ps", "jpg", "jpeg", "tif", "tiff", "webp", "pgf", "raw", "rgba")


def check_figure_path(out: str | Path) -> Path:
    """`out` if its suffix names a figure format; ConfigError naming the formats otherwise."""
    out = Path(out)
    if not str(out).strip():
        raise ConfigError("the figure file name is empty; give one such as fig.png")
    suffix = out.suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise ConfigError(f"cannot tell the figure format of {out} (suffix '{out.suffix}'); end --out in one of: "
                          f"{', '.join('.' + f for f in FORMATS[:6])}")
    return out


def save_figure(figure, out: str | Path, **options) -> Path:
    """Save a matplotlib figure atomically (format from the suffix of `out`)."""
    out = check_figure_path(out)
    with atomic_path(out) as temporary:
        figure.savefig(temporary, format=out.suffix.lower().lstrip("."), **options)
    return out


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display is assumed
    import matplotlib.pyplot as plt

    return plt


def plot_fields(run: store.RunFile, out: str | Path) -> Path:
    """Solution, reference and error maps of a 2-D run, written to `out` (PNG, PDF, …); for a
    multi-field run also each further field, its reference and error (one row per field), and
    the observation locations of an inverse problem."""
    out = check_figure_path(out)
    # Everything drawn is read (and checked) before the figure starts.
    points, shape = schema.grid(run)
    if len(shape) != 2:
        raise ConfigError(f"field maps need a 2-D evaluation grid, this run has shape {shape}")
    fields = run.groups[store.FIELDS]
    x = points[:, 0].reshape(shape)
    y = points[:, 1].reshape(shape)
    errors = schema.error_row(run, store.ERRORS) if store.ERRORS in run.group_attrs else {}
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
    # The posterior standard deviation σ of each field and |error| / σ, where the run holds σ.
    for index, field in enumerate([store.U, *others]):
        std_key, _ = uncertainty_names(field, index == 0)
        if std_key in fields:
            panels += [(std_key, f"posterior std σ_{field}", "magma"),
                       (f"{_RATIO}:{field}", f"|error {field}| / σ_{field} (saturates at 3)", "cividis")]
    # Learning results also hold the learned Gibbs lengthscale field (one map per dimension).
    lengthscale = schema.grid_field(run, LENGTHSCALE, shape, extra=1) if LENGTHSCALE in fields else None
    if lengthscale is not None:
        for i in range(lengthscale.shape[-1]):
            panels.append((f"{LENGTHSCALE}:{i}", f"learned lengthscale ℓ_{i}(x)", "magma"))
    values_of = {name: schema.grid_field(run, name, shape) for name, _, _ in panels
                 if not name.startswith((LENGTHSCALE, _RATIO))}
    for name, _, _ in panels:
        if name.startswith(_RATIO):
            field = name.split(":", 1)[1]
            _, _, error_key, _ = store.field_names(field, field == store.U)
            std_key, _ = uncertainty_names(field, field == store.U)
            error, std = np.abs(schema.grid_field(run, error_key, shape)), values_of[std_key]
            values_of[name] = np.divide(error, std, out=np.full(shape, np.nan), where=std > 0)
    drawn_points = {}
    for name in ("interior", "boundary", "observations"):
        if name in run.groups.get(store.POINTS, {}):
            drawn_points[name] = schema.dataset(run, store.POINTS, name, ndim=2)
            if drawn_points[name].shape[1] < 2:
                raise ConfigError(f"{run.path}: /{store.POINTS}/{name} needs 2 coordinates per point")
    plt = _pyplot()
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
            values = values_of[name]
        if name.startswith(_RATIO):
            image = axis.pcolormesh(x, y, values, cmap=colormap, vmin=0.0, vmax=3.0, shading="auto")
        elif name == store.ERROR or name.startswith(f"{store.ERROR}_"):
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
        pts = drawn_points.get(name)
        if pts is not None:
            axes[0].plot(pts[:, 0], pts[:, 1], marker, color="k", markersize=1.5, alpha=0.4)
    # Observation locations of an inverse problem, on the solution and on every other field.
    observations = drawn_points.get("observations")
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
    try:
        save_figure(figure, out, dpi=110)
    finally:
        plt.close(figure)
    return out
