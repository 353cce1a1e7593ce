"""Supernodes padded into a few size buckets, and the compressed-column layout of the factor.

The dense work of a supernode (its Gram block, Cholesky factor and triangular solve) runs batched:
supernodes of similar size share one bucket, padded to the bucket's row count S and column count
M, in chunks of B supernodes, so that each bucket compiles once and a chunk's Gram blocks stay
within a memory budget. Bucket bounds are quantiles of the row counts (rounded up to a multiple of
8), which wastes less padding than geometric bounds because most supernodes sit at the finest
scales and have similar sizes. Padding slots come last in a supernode, where they cannot change
the leading rows of L⁻ᵀ that the real columns use. Everything here is numpy, built once per
sparsity pattern and reused whenever the factor's values change.
"""

from dataclasses import dataclass

import numpy as np
from jaxtyping import Bool, Int

from ._pattern import SupernodalPattern

# Bucket bounds: quantiles of the row counts, at most this many. Each bucket compiles its own
# batched kernel (about 2 s of CPU each for two operators), so small problems, where padding costs
# little, get fewer: one bucket per decade of supernodes.
_BUCKETS = 5


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
    buckets = int(np.clip(np.floor(np.log10(max(pattern.supernodes, 1))), 1, _BUCKETS))
    quantiles = np.quantile(row_counts, np.linspace(0, 1, buckets + 1)[1:])
    bounds = np.unique(np.ceil(quantiles / 8).astype(np.int64) * 8)
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

    chunks = []
    indices = np.empty(indptr[-1], dtype=np.int64)
    for b, size in enumerate(bounds):
        members = np.flatnonzero(bucket == b)
        if members.size == 0:
            continue
        width = int(column_counts[members].max())
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
