"""Exact duplicates (identical file bytes) and near-duplicates (edited copies).

The pair similarity of two images averages two cosines: of their global descriptors, which
say "the same content", and of their 7x7 cell descriptors position by position, which add "laid out the
same way". Both come from the image's luminance, so grayscale, recompressed, resized and re-lit copies
land almost on their original, and crops and small rotations move them only a little. The cells keep
look-alikes apart (close-ups of two similar dog breeds, say): among the 900 distinct sample photos they
cut the sets grouped at the best threshold from 37 to 14 (docs/curation.md).

Near-duplicate groups start as the connected components of the neighbour graph's links that reach the
threshold. A chain of links can join two different photos through a look-alike, so each component is
then split around its keepers: the image to keep takes every member that reaches the threshold with it,
then the best of the rest does the same, and so on. Every member of a group is thus a copy of its keeper.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..store import RecordColumns
from .neighbours import NeighbourGraph

PAIR_BLOCK = 4096

# Reads the cell descriptors of some rows: (rows, cells, cell_dim), L2-normalised per cell.
CellReader = Callable[[np.ndarray], np.ndarray]
# Similarities of the row pairs (a[i], b[i]): at most 1, and never above (1 + global cosine) / 2.
PairSimilarity = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class RowGroup:
    rows: np.ndarray  # the keeper first, then the rest by id
    similarities: np.ndarray  # of each row to the keeper


def exact_duplicate_groups(table: RecordColumns) -> list[RowGroup]:
    """Rows sharing a file digest, per digest held more than once."""
    known = np.flatnonzero(table.digests != b"")
    _, inverse, counts = np.unique(table.digests[known], return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(counts)])
    groups = []
    for digest in np.flatnonzero(counts > 1):
        rows = keeper_first(known[order[bounds[digest]:bounds[digest + 1]]], table)
        groups.append(RowGroup(rows, np.ones(len(rows), np.float32)))
    return groups


def pair_similarity(a: np.ndarray, b: np.ndarray, vectors: np.ndarray, read_cells: CellReader) -> np.ndarray:
    """(global cosine + mean cosine of the cells at the same positions) / 2 for the row pairs (a, b),
    reading cells a block of pairs at a time."""
    similarity = np.einsum("ij,ij->i", vectors[a], vectors[b]).astype(np.float32)
    for start in range(0, len(a), PAIR_BLOCK):
        block_a, block_b = a[start:start + PAIR_BLOCK], b[start:start + PAIR_BLOCK]
        rows, inverse = np.unique(np.concatenate([block_a, block_b]), return_inverse=True)
        cells = read_cells(rows)
        count = cells.shape[1]
        cells = cells.reshape(len(rows), -1)
        first, second = cells[inverse[:len(block_a)]], cells[inverse[len(block_a):]]
        similarity[start:start + PAIR_BLOCK] += np.einsum("ij,ij->i", first, second) / count
    return np.minimum(similarity / 2, 1.0)


def near_duplicate_groups(graph: NeighbourGraph, table: RecordColumns, threshold: float,
                          similarity_of: PairSimilarity) -> list[RowGroup]:
    """Groups of rows whose `similarity_of` with the group's keeper reaches `threshold`, found among
    the neighbour graph's links."""
    groups = []
    for component in _linked_components(graph, threshold, similarity_of):
        groups.extend(_split_around_keepers(component, table, threshold, similarity_of))
    return groups


def keeper_first(rows: np.ndarray, table: RecordColumns) -> np.ndarray:
    """The rows with the one to keep first: the most pixels, then the largest file, then the lowest id;
    the rest follow in id order."""
    best = min(rows.tolist(), key=lambda r: (-table.pixels[r], -table.file_sizes[r], table.ids[r]))
    rest = sorted((r for r in rows.tolist() if r != best), key=lambda r: table.ids[r])
    return np.array([best, *rest], np.int64)


def _linked_components(graph: NeighbourGraph, threshold: float,
                       similarity_of: PairSimilarity) -> list[np.ndarray]:
    # A link's similarity cannot exceed (1 + its global cosine) / 2, so only links with a global
    # cosine of at least 2 * threshold - 1 need scoring.
    a, b, _ = graph.edges(2 * threshold - 1)
    keep = similarity_of(a, b) >= threshold
    a, b = a[keep], b[keep]
    if not len(a):
        return []
    linked = np.unique(np.concatenate([a, b]))
    local = np.searchsorted(linked, np.stack([a, b]))
    adjacency = coo_matrix((np.ones(len(a), np.int8), (local[0], local[1])), shape=(len(linked),) * 2)
    count, component = connected_components(adjacency, directed=False)
    order = np.argsort(component, kind="stable")
    bounds = np.searchsorted(component[order], np.arange(count + 1))
    return [linked[order[bounds[c]:bounds[c + 1]]] for c in range(count)]


def _split_around_keepers(component: np.ndarray, table: RecordColumns, threshold: float,
                          similarity_of: PairSimilarity) -> list[RowGroup]:
    groups = []
    remaining = component
    while len(remaining) > 1:
        ordered = keeper_first(remaining, table)
        keeper, others = ordered[0], ordered[1:]
        similarity = similarity_of(np.full(len(others), keeper), others)
        close = similarity >= threshold
        if close.any():
            groups.append(RowGroup(np.concatenate([[keeper], others[close]]),
                                   np.concatenate([[1.0], similarity[close]]).astype(np.float32)))
        remaining = others[~close]
    return groups
