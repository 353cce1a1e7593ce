"""Ordering of the measurement functionals and the supernodal sparsity pattern of the factor.

A functional is one operator at one point (δ_x, Δδ_x, …). The points ("sites") are put in maximin
order (`_ordering.py`), and a site with several functionals places them in one of two ways:

- "follow_diracs": each site's functionals right after one another, its leading functional (δ when
  the site has one) first; all of them get the site's lengthscale. The δ and the derivatives at one
  point then land in the same supernode.
- "diracs_first": every site's leading functional in maximin order first, then all the remaining
  (derivative) functionals, in the same site order, at the finest scale: their lengthscale is the
  smallest site lengthscale. This is the ordering for which the screening effect is proven
  (Chen, Owhadi, Schäfer, Math. Comp. 2025).

Column k of the factor (the k-th functional in this order) has nonzeros on the functionals
j ≤ k whose sites lie within ρ·ℓ_k of its own site. Columns are grouped into supernodes that share
one row set: columns whose lengthscales lie in one band (ℓ_max/λ^(b+1), ℓ_max/λ^b] and whose sites
fall into one cell of a grid with spacing α·ρ·ℓ (ℓ the band's largest lengthscale). The row set of
a supernode is every earlier functional within r = ρ·max ℓ + max |x_c − centre| of the centre of
its columns, a superset of the union of its columns' sets (so each column is at least as accurate
as its own set would make it). Rows of a supernode, one small dense Cholesky factorization, give
all its columns. Everything here is numpy/scipy on the CPU, O(N log N) with KD-trees.
"""

from dataclasses import dataclass

import numpy as np
from jaxtyping import Float, Int
from scipy.spatial import cKDTree

from .._errors import ConfigError
from ._ordering import maximin_ordering

FOLLOW_DIRACS = "follow_diracs"
DIRACS_FIRST = "diracs_first"
ORDERINGS = (FOLLOW_DIRACS, DIRACS_FIRST)


@dataclass(frozen=True)
class SupernodalPattern:
    """The ordering and the supernodes, in positions of the ordering (0 … n−1).

    order[p] is the (natural) index of the functional at position p, lengthscales[p] its
    lengthscale. Supernode s has the row positions rows[row_start[s]:row_start[s+1]] (ascending)
    and the column positions columns[column_start[s]:column_start[s+1]] (ascending, a subset of
    its rows); column c of the factor has the rows of its supernode that are ≤ c.
    """

    order: Int[np.ndarray, " n"]
    lengthscales: Float[np.ndarray, " n"]
    rows: Int[np.ndarray, " r"]
    row_start: Int[np.ndarray, " s1"]
    columns: Int[np.ndarray, " n"]
    column_start: Int[np.ndarray, " s1"]

    @property
    def size(self) -> int:
        return self.order.shape[0]

    @property
    def supernodes(self) -> int:
        return self.row_start.shape[0] - 1

    def column_counts(self) -> Int[np.ndarray, " n"]:
        """Nonzeros of each factor column, by position."""
        counts = np.empty(self.size, dtype=np.int64)
        for s in range(self.supernodes):
            rows = self.rows[self.row_start[s] : self.row_start[s + 1]]
            columns = self.columns[self.column_start[s] : self.column_start[s + 1]]
            counts[columns] = np.searchsorted(rows, columns) + 1
        return counts


def functional_order(
    site_lengthscales: Float[np.ndarray, " sites"],
    site_rank: Int[np.ndarray, " sites"],
    site_of: Int[np.ndarray, " n"],
    rank: Int[np.ndarray, " n"],
    ordering: str,
) -> tuple[Int[np.ndarray, " n"], Float[np.ndarray, " n"], Int[np.ndarray, " n"]]:
    """(order, lengthscales, group) of the functionals from the maximin ranks of their sites.

    site_rank[s] is the maximin position of site s, site_lengthscales[s] its lengthscale;
    functional i sits at site site_of[i] and is the rank[i]-th functional there (0: the leading
    one). group is 0 for functionals ordered with their site and 1 for the derivative functionals
    that "diracs_first" appends at the finest scale (they form their own supernodes).
    """
    if ordering not in ORDERINGS:
        raise ConfigError(f"unknown functional ordering '{ordering}'; choose one of {', '.join(ORDERINGS)}")
    position = site_rank[site_of]
    if ordering == FOLLOW_DIRACS:
        order = np.lexsort((rank, position))
        group = np.zeros(order.shape[0], dtype=np.int64)
        return order, site_lengthscales[site_of[order]], group
    trailing = rank > 0
    order = np.lexsort((position, rank, trailing))
    finest = float(np.min(site_lengthscales))
    lengthscales = np.where(trailing[order], finest, site_lengthscales[site_of[order]])
    return order, lengthscales, trailing[order].astype(np.int64)


def supernodal_pattern(
    site_points: Float[np.ndarray, "sites d"],
    site_of: Int[np.ndarray, " n"],
    rank: Int[np.ndarray, " n"],
    rho: float,
    ordering: str = FOLLOW_DIRACS,
    band_ratio: float = 1.5,
    aggregation: float = 0.7,
    site_order: tuple[np.ndarray, np.ndarray] | None = None,
    site_group: Int[np.ndarray, " sites"] | None = None,
) -> SupernodalPattern:
    """Order the functionals (site_of[i], rank[i]: the site of functional i and its rank there)
    and build the supernodes for sparsity radius ρ (`rho`), band ratio λ (`band_ratio`) and cell
    size α·ρ·ℓ (`aggregation` = α). `site_points` are in the kernel's scaled coordinates.
    `site_order` = (order, lengthscales) reuses a maximin ordering of the sites; `site_group`
    (from a grouped ordering) keeps the groups' columns in separate supernodes."""
    if not rho > 0:
        raise ConfigError(f"the sparsity radius rho must be > 0 (typical 2 … 5), got {rho}")
    if not band_ratio > 1:
        raise ConfigError(f"the supernode band ratio must be > 1 (typical 1.5), got {band_ratio}")
    if not aggregation > 0:
        raise ConfigError(f"the supernode aggregation must be > 0 (typical 0.5 … 1), got {aggregation}")
    site_points = np.asarray(site_points, dtype=np.float64)
    sites_in_order, site_scales = maximin_ordering(site_points) if site_order is None else site_order
    site_rank = np.empty(site_points.shape[0], dtype=np.int64)
    site_rank[sites_in_order] = np.arange(site_points.shape[0])
    lengthscale_of_site = np.empty(site_points.shape[0])
    lengthscale_of_site[sites_in_order] = site_scales
    order, lengthscales, group = functional_order(lengthscale_of_site, site_rank, site_of, rank, ordering)
    points = site_points[site_of[order]]  # coordinates by position
    if site_group is not None:
        group = group + 2 * np.asarray(site_group)[site_of[order]]

    # Supernode key of each column: (group, band, cell).
    top = float(np.max(lengthscales))
    positive = np.maximum(lengthscales, top * 1e-12)
    band = np.floor(np.log(top / positive) / np.log(band_ratio) + 1e-9).astype(np.int64)
    band_top = top / band_ratio**band
    cell = np.floor(points / (aggregation * rho * band_top)[:, None]).astype(np.int64)
    keys = np.column_stack([group, band, cell])
    _, label = np.unique(keys, axis=0, return_inverse=True)
    label = label.ravel()
    by_label = np.lexsort((np.arange(label.shape[0]), label))
    counts = np.bincount(label)
    column_start = np.concatenate([[0], np.cumsum(counts)])
    columns = by_label  # positions, ascending within each supernode (stable sort by label)
    count = counts.shape[0]

    # Ball of each supernode: centre of its columns' sites, radius ρ·max ℓ + max deviation.
    centre = np.add.reduceat(points[columns], column_start[:-1], axis=0) / counts[:, None]
    deviation = np.linalg.norm(points[columns] - np.repeat(centre, counts, axis=0), axis=1)
    radius = np.maximum.reduceat(deviation, column_start[:-1]) + rho * np.maximum.reduceat(
        lengthscales[columns], column_start[:-1]
    )
    radius = radius * (1 + 1e-12) + 1e-300  # each column's own site must fall inside
    last = np.maximum.reduceat(columns, column_start[:-1])

    # Rows: every functional at positions ≤ the supernode's last column within its ball. Done per
    # (group, band) with a KD-tree over the prefix of the ordering up to that band's last column,
    # so that coarse bands (large balls) only see the few coarse functionals before them.
    row_parts, owner_parts = [], []
    first_key = keys[columns[column_start[:-1]]][:, :2]
    for g, b in np.unique(first_key, axis=0):
        members = np.flatnonzero((first_key[:, 0] == g) & (first_key[:, 1] == b))
        end = int(last[members].max()) + 1
        prefix = cKDTree(points[:end])
        pairs = cKDTree(centre[members]).sparse_distance_matrix(
            prefix, float(radius[members].max()), output_type="ndarray"
        )
        owner, row, distance = members[pairs["i"]], pairs["j"].astype(np.int64), pairs["v"]
        keep = (distance <= radius[owner]) & (row <= last[owner])
        row_parts.append(row[keep])
        owner_parts.append(owner[keep])
    rows, owners = np.concatenate(row_parts), np.concatenate(owner_parts)
    sort = np.lexsort((rows, owners))
    rows, owners = rows[sort], owners[sort]
    row_start = np.concatenate([[0], np.cumsum(np.bincount(owners, minlength=count))])
    return SupernodalPattern(order, lengthscales, rows, row_start, columns, column_start)
