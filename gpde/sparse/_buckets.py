"""Supernodes padded into a few size buckets, and the compressed-column layout of the factor.

The dense work of a supernode (its Gram block, Cholesky factor and triangular solve) runs batched:
supernodes of similar size share one bucket, padded to the bucket's row count S and column count
M, in chunks of B supernodes, so that each bucket compiles once and a chunk's Gram blocks stay
within a memory budget. The bucket bounds are chosen by dynamic programming over the sorted row
counts (rounded up to a multiple of 8) to minimize the modelled time: each supernode costs what its
padded block costs (Gram entries ∝ S², Cholesky ∝ S³) and each bucket one compilation. Small
problems therefore get one or two buckets and large ones many, with little padding. Padding slots
come last in a supernode, where they cannot change the leading rows of L⁻ᵀ that the real columns
use. Everything here is numpy, built once per sparsity pattern and reused whenever the factor's
values change.
"""

from dataclasses import dataclass

import numpy as np
from jaxtyping import Bool, Int

from ._pattern import SupernodalPattern

# Cost model of the bucket choice (seconds, one CPU core, measured 2026-11-29 for Matérn 7/2 with δ
# and Δ): a Gram entry with all its operator blocks, a Cholesky flop, and one bucket's compilation.
_SECONDS_PER_ENTRY = 2.2e-8
_SECONDS_PER_FLOP = 1.5e-10
_SECONDS_PER_COMPILE = 0.6
_MAX_BUCKETS = 24


def _block_seconds(size):
    size = np.asarray(size, dtype=np.float64)
    return _SECONDS_PER_ENTRY * size**2 + _SECONDS_PER_FLOP * size**3 / 3


def bucket_bounds(row_counts: Int[np.ndarray, " s"]) -> Int[np.ndarray, " b"]:
    """Padded sizes (ascending, multiples of 8) minimizing Σ block cost(padded size) + compilations.

    Dynamic programming over the distinct rounded sizes u_1 < … < u_m: best[k][i] is the least cost
    of covering the supernodes of size ≤ u_i with k buckets, the largest of which is u_i."""
    rounded = np.ceil(np.asarray(row_counts) / 8).astype(np.int64) * 8
    sizes, counts = np.unique(rounded, return_counts=True)
    m = sizes.shape[0]
    cumulative = np.concatenate([[0], np.cumsum(counts)])
    block = _block_seconds(sizes)
    # cover[j, i]: the supernodes with sizes u_(j+1) … u_i, all padded to u_i (j < i).
    cover = np.full((m + 1, m), np.inf)
    for i in range(m):
        j = np.arange(i + 1)
        cover[j, i] = (cumulative[i + 1] - cumulative[j]) * block[i]
    best = np.full((_MAX_BUCKETS + 1, m), np.inf)
    choice = np.zeros((_MAX_BUCKETS + 1, m), dtype=np.int64)
    best[1] = cover[0]
    for k in range(2, _MAX_BUCKETS + 1):
        for i in range(1, m):  # two or more buckets need two or more sizes
            candidates = best[k - 1, :i] + cover[1 : i + 1, i]
            j = int(np.argmin(candidates))
            best[k, i], choice[k, i] = candidates[j], j
    total = best[1:, m - 1] + _SECONDS_PER_COMPILE * np.arange(1, _MAX_BUCKETS + 1)
    k = int(np.argmin(total)) + 1
    bounds, i = [], m - 1
    while k >= 1:
        bounds.append(int(sizes[i]))
        i, k = int(choice[k, i]), k - 1
    return np.array(sorted(bounds), dtype=np.int64)


@dataclass(frozen=True)
class Chunk:
    """B padded supernodes of one bucket: rows[b, s] is the position of the s-th row of supernode
    b (padding: 0, with valid[b, s] False), slots[b, k] the row slot of its k-th column (padding:
    0, with column_valid False) and columns[b, k] that column's position."""

    rows: Int[np.ndarray, "B S"]
    valid: Bool[np.ndarray, "B S"]
    slots: Int[np.ndarray, "B M"]
    columns: Int[np.ndarray, "B M"]
    column_valid: Bool[np.ndarray, "B M"]


@dataclass(frozen=True)
class BucketLayout:
    """The chunks, and the factor's compressed-column structure (indptr, indices) in positions
    of the ordering: column c holds rows indices[indptr[c]:indptr[c+1]], ascending, last = c."""

    chunks: tuple[Chunk, ...]
    indptr: Int[np.ndarray, " n1"]
    indices: Int[np.ndarray, " nnz"]

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])

    def destinations(self, chunk: Chunk) -> tuple[Bool[np.ndarray, "B M S"], Int[np.ndarray, " e"]]:
        """Where a chunk's solved columns go: out[b, k, s] (the factor value of row slot s in
        column k of supernode b) is stored at data[dest] for the entries where mask is True."""
        slot = np.arange(chunk.rows.shape[1])
        mask = chunk.column_valid[:, :, None] & (slot[None, None, :] <= chunk.slots[:, :, None])
        dest = (self.indptr[chunk.columns][:, :, None] + slot[None, None, :])[mask]
        return mask, dest


def bucket_layout(pattern: SupernodalPattern, entries_per_chunk: int = 2_000_000) -> BucketLayout:
    """Pad the pattern's supernodes into buckets; a chunk holds about `entries_per_chunk` Gram
    entries (B·S² ≈ entries_per_chunk, at least one supernode)."""
    row_counts = np.diff(pattern.row_start)
    column_counts = np.diff(pattern.column_start)
    bounds = bucket_bounds(row_counts)
    bucket = np.searchsorted(bounds, row_counts)

    slots = np.empty(pattern.size, dtype=np.int64)  # row slot of each column in its supernode
    for_supernode = np.repeat(np.arange(pattern.supernodes), column_counts)
    row_of_column = pattern.row_start[for_supernode]
    # Columns are a subset of their supernode's rows, both ascending: find each column's slot by
    # a search within its supernode's row list (rows offset per supernode keep it one global search).
    offset = np.repeat(np.arange(pattern.supernodes) * (pattern.size + 1), row_counts)
    keyed_rows = pattern.rows + offset
    keyed_columns = pattern.columns + for_supernode * (pattern.size + 1)
    slots[np.arange(pattern.size)] = np.searchsorted(keyed_rows, keyed_columns) - row_of_column
    counts = np.empty(pattern.size, dtype=np.int64)
    counts[pattern.columns] = slots + 1
    indptr = np.concatenate([[0], np.cumsum(counts)])
    # 32-bit indices (what SuperLU's triangular sweep takes) whenever they fit: the factor's
    # compressed columns then share these arrays without a copy.
    index_type = np.intc if indptr[-1] < np.iinfo(np.intc).max else np.int64
    indptr = indptr.astype(index_type)

    chunks = []
    indices = np.empty(indptr[-1], dtype=index_type)
    for b, size in enumerate(bounds):
        members = np.flatnonzero(bucket == b)
        if members.size == 0:
            continue
        width = int(np.ceil(column_counts[members].max() / 8)) * 8
        per_chunk = max(1, entries_per_chunk // int(size) ** 2)
        for start in range(0, members.size, per_chunk):
            part = members[start : start + per_chunk]
            chunk = _chunk(pattern, slots, part, per_chunk, int(size), width)
            mask, dest = BucketLayout((), indptr, indices).destinations(chunk)
            indices[dest] = np.broadcast_to(chunk.rows[:, None, :], mask.shape)[mask]
            chunks.append(chunk)
    return BucketLayout(tuple(chunks), indptr, indices)


def _chunk(pattern, slots, members, batch, size, width) -> Chunk:
    rows = np.zeros((batch, size), dtype=np.int64)
    valid = np.zeros((batch, size), dtype=bool)
    column_slots = np.zeros((batch, width), dtype=np.int64)
    columns = np.zeros((batch, width), dtype=np.int64)
    column_valid = np.zeros((batch, width), dtype=bool)
    for i, s in enumerate(members):
        r = pattern.rows[pattern.row_start[s] : pattern.row_start[s + 1]]
        c0, c1 = pattern.column_start[s], pattern.column_start[s + 1]
        rows[i, : r.size], valid[i, : r.size] = r, True
        columns[i, : c1 - c0], column_valid[i, : c1 - c0] = pattern.columns[c0:c1], True
        column_slots[i, : c1 - c0] = slots[c0:c1]
    return Chunk(rows, valid, column_slots, columns, column_valid)
