"""The maximin ordering of a point cloud: coarse to fine, with a lengthscale per point.

Each point in turn is the one farthest from all points chosen before it; its lengthscale ℓ is that
distance. The first k points then cover the cloud at resolution ℓ_k and are at least ℓ_k apart, so
ℓ falls monotonically and the ordering is a multiresolution hierarchy (the "reverse maximin"
ordering of Schäfer, Katzfuss and Owhadi, 2021: the inverse Cholesky factor of a kernel matrix in
this order is nearly sparse, its column k living within a few ℓ_k of point k).

Computed with a KD-tree and a max-heap of the current distances to the chosen set, which are
only lowered inside the ball of radius ℓ around each newly chosen point: O(N log² N) work. It
runs on the CPU in numpy/scipy (the work is one tree query per point, inherently sequential).
"""

import heapq

import numpy as np
from jaxtyping import Float, Int
from scipy.spatial import cKDTree


def maximin_ordering(
    points: Float[np.ndarray, "n d"], initial_distance: Float[np.ndarray, " n"] | None = None
) -> tuple[Int[np.ndarray, " n"], Float[np.ndarray, " n"]]:
    """(order, lengthscales): order[k] is the index of the k-th point, lengthscales[k] its distance
    to the points order[:k] (for the first point: its largest distance to any point, so every
    lengthscale is finite). Ties are broken by the smaller index, so the result is deterministic.

    The first point is the one closest to the centroid. Duplicate points get lengthscale 0. With
    `initial_distance` (each point's distance to points already ordered elsewhere) the ordering
    continues from those: the first point is the farthest from them and distances start there.
    """
    points = np.ascontiguousarray(points, dtype=np.float64)
    n = points.shape[0]
    order = np.empty(n, dtype=np.int64)
    lengthscales = np.empty(n, dtype=np.float64)
    if n == 0:
        return order, lengthscales
    tree = cKDTree(points)
    if initial_distance is None:
        first = int(np.argmin(np.sum((points - points.mean(axis=0)) ** 2, axis=1)))
        distance = np.sqrt(np.sum((points - points[first]) ** 2, axis=1))
        order[0], lengthscales[0] = first, float(distance.max())
    else:
        distance = np.asarray(initial_distance, dtype=np.float64).copy()
        first = int(np.argmax(distance))
        order[0], lengthscales[0] = first, float(distance[first])
        near = np.asarray(tree.query_ball_point(points[first], distance[first], return_sorted=False), dtype=np.int64)
        distance[near] = np.minimum(distance[near], np.sqrt(np.sum((points[near] - points[first]) ** 2, axis=1)))
    chosen = np.zeros(n, dtype=bool)
    chosen[first] = True
    # Max-heap on the distance to the chosen set, stored negated; an entry is stale when its key
    # no longer equals the point's current distance (lazy deletion instead of decrease-key).
    heap = [(-d, j) for j, d in enumerate(distance.tolist()) if j != first]
    heapq.heapify(heap)
    for k in range(1, n):
        while True:
            key, i = heapq.heappop(heap)
            if not chosen[i] and -key == distance[i]:
                break
        chosen[i] = True
        radius = distance[i]
        order[k], lengthscales[k] = i, radius
        if radius <= 0.0:
            continue
        near = np.asarray(tree.query_ball_point(points[i], radius, return_sorted=False), dtype=np.int64)
        d = np.sqrt(np.sum((points[near] - points[i]) ** 2, axis=1))
        closer = d < distance[near]
        if np.any(closer):
            near, d = near[closer], d[closer]
            distance[near] = d
            for j, dj in zip(near.tolist(), d.tolist()):
                heapq.heappush(heap, (-dj, j))
    return order, lengthscales


def grouped_maximin_ordering(
    points: Float[np.ndarray, "n d"], group: Int[np.ndarray, " n"]
) -> tuple[Int[np.ndarray, " n"], Float[np.ndarray, " n"]]:
    """Maximin ordering of the points group by group (group 0 first): each group is ordered
    coarse to fine, its lengthscales measured to every point of the earlier groups too. Putting
    the Dirac-only constraints (boundary values) first makes them the coarse levels that screen
    the interior's derivative functionals."""
    group = np.asarray(group)
    order_parts, scale_parts = [], []
    for g in np.unique(group):
        members = np.flatnonzero(group == g)
        initial = None
        if order_parts:
            earlier = np.concatenate(order_parts)
            initial, _ = cKDTree(points[earlier]).query(points[members])
        order, scales = maximin_ordering(points[members], initial)
        order_parts.append(members[order])
        scale_parts.append(scales)
    return np.concatenate(order_parts), np.concatenate(scale_parts)
