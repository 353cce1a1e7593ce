"""Field maps from result files, including a learned lengthscale field."""

import numpy as np

from gpde.io import _store as store
from gpde.app._plotting import plot_fields


def _run(with_lengthscale: bool) -> store.RunFile:
    axis = np.linspace(0.0, 1.0, 6)
    points = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(-1, 2)
    u = np.sin(points[:, 0]).reshape(6, 6)
    fields = {store.GRID_POINTS: points, store.U: u, store.U_REF: u + 1e-3, store.ERROR: -1e-3 + 0 * u}
    if with_lengthscale:
        fields["lengthscale"] = np.stack([0.1 + 0 * u, 0.2 + 0 * u], axis=-1)
    return store.RunFile(
        problem="test", seed=0, config={}, groups={store.FIELDS: fields},
        group_attrs={store.FIELDS: {store.GRID_SHAPE: np.array([6, 6])},
                     store.ERRORS: {"rms": 1e-3, "l2_relative": 1e-2, "linf": 1e-3}},
    )


def test_plot_draws_one_panel_per_field(tmp_path):
    import matplotlib.image

    plain = plot_fields(_run(False), tmp_path / "plain.png")
    learned = plot_fields(_run(True), tmp_path / "learned.png")
    width_plain = matplotlib.image.imread(plain).shape[1]
    width_learned = matplotlib.image.imread(learned).shape[1]
    # Three panels (u, reference, error) plus one per lengthscale dimension.
    assert width_learned * 3 == width_plain * 5
