"""Axis-aligned boxes and the collocation point sets that the published setups use."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._errors import ConfigError

#: A face of a box: (coordinate, side) with side 0 the lower and 1 the upper face.
Face = tuple[int, int]

GRID = "grid"
RANDOM = "random"
LAYOUTS = (GRID, RANDOM)


def _check_layout(layout):
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown point layout '{layout}'; choose one of {', '.join(LAYOUTS)}")


def _split_evenly(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


class Box(eqx.Module):
    """The box Π_i [lower_i, upper_i]."""

    lower: tuple[float, ...] = eqx.field(static=True)
    upper: tuple[float, ...] = eqx.field(static=True)

    def __check_init__(self):
        if len(self.lower) != len(self.upper) or any(a >= b for a, b in zip(self.lower, self.upper)):
            raise ConfigError(f"a box needs lower < upper in every coordinate, got {self.lower}, {self.upper}")

    @property
    def dim(self) -> int:
        return len(self.lower)

    def shrunk(self, margin: float, faces: "tuple[Face, ...] | None" = None) -> "Box":
        """The box with each face in `faces` (all faces by default) moved inward by `margin`
        (margin 0: the box itself)."""
        if not (np.isfinite(margin) and margin >= 0):
            raise ConfigError(f"a margin must be finite and >= 0, got {margin}")
        faces = self.faces if faces is None else faces
        lower = tuple(a + margin * ((i, 0) in faces) for i, a in enumerate(self.lower))
        upper = tuple(b - margin * ((i, 1) in faces) for i, b in enumerate(self.upper))
        if any(a >= b for a, b in zip(lower, upper)):
            raise ConfigError(
                f"a margin of {margin} leaves nothing of the box {self.lower} … {self.upper}; use a smaller margin"
            )
        return Box(lower, upper)

    @property
    def faces(self) -> tuple[Face, ...]:
        return tuple((i, side) for i in range(self.dim) for side in (0, 1))

    def interior_points(self, n: int, layout: str, key: PRNGKeyArray) -> Float[Array, "n d"]:
        """`grid`: a tensor grid of n = m^d points strictly inside (spacing (upper−lower)/(m+1));
        `random`: n uniform random points."""
        _check_layout(layout)
        lower, upper = np.array(self.lower), np.array(self.upper)
        if layout == RANDOM:
            return jnp.asarray(lower + (upper - lower) * np.asarray(jax.random.uniform(key, (n, self.dim))))
        per_side = round(n ** (1.0 / self.dim))
        if per_side**self.dim != n:
            raise ConfigError(
                f"a grid of interior points needs a perfect {self.dim}-th power of points, got {n}; "
                f"use {per_side**self.dim} or {(per_side + 1) ** self.dim}, or --layout random"
            )
        axes = [np.linspace(a, b, per_side + 2)[1:-1] for a, b in zip(lower, upper)]
        return jnp.asarray(np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, self.dim))

    def boundary_points(
        self, n: int, layout: str, key: PRNGKeyArray, faces: tuple[Face, ...] | None = None
    ) -> Float[Array, "n d"]:
        """n points split evenly over `faces` (all faces by default). On each face, `grid` puts
        them at cell centres along the face (never on a corner, so no point is repeated) and
        `random` draws them uniformly. Grid faces are one-dimensional lines (2-D boxes)."""
        _check_layout(layout)
        faces = self.faces if faces is None else faces
        if n < len(faces):
            raise ConfigError(f"need at least one boundary point per face ({len(faces)}), got {n}")
        lower, upper = np.array(self.lower), np.array(self.upper)
        keys = jax.random.split(key, len(faces))
        chunks = []
        for (coordinate, side), count, face_key in zip(faces, _split_evenly(n, len(faces)), keys):
            if layout == RANDOM:
                unit = np.asarray(jax.random.uniform(face_key, (count, self.dim)))
            else:
                if self.dim != 2:
                    raise ConfigError("grid boundary points are implemented for 2-D boxes; use --layout random")
                along = (np.arange(count) + 0.5) / count
                unit = np.repeat(along[:, None], self.dim, axis=1)
            points = lower + (upper - lower) * unit
            points[:, coordinate] = upper[coordinate] if side else lower[coordinate]
            chunks.append(points)
        return jnp.asarray(np.concatenate(chunks))

    def grid(self, per_side: int) -> tuple[Float[Array, "n d"], tuple[int, ...]]:
        """A closed tensor grid with `per_side` nodes per coordinate (boundary included), as
        points (row-major, 'ij' indexing) and the grid shape."""
        if per_side < 2:
            raise ConfigError(f"an evaluation grid needs at least 2 nodes per side, got {per_side}")
        axes = [np.linspace(a, b, per_side) for a, b in zip(self.lower, self.upper)]
        points = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, self.dim)
        return jnp.asarray(points), (per_side,) * self.dim
