"""Exact duplicates (identical file bytes) and near-duplicates (edited copies, verified from pixels).

The pair similarity of two images averages two cosines: of their global descriptors, which say "the same
content", and of their 7x7 cell descriptors position by position, which add "laid out the same way". It
costs nothing beyond the stored descriptors, but it cannot tell an edited copy from a photo of a
look-alike (two dog breeds, a leopard and a cheetah): among the 900 distinct sample photos, 16 pairs of
different photos score as high as heavily edited copies. So it only proposes candidates: the neighbour
graph's links whose similarity reaches a threshold, and the pairs of identical files. Each candidate pair
is then checked from the two files' pixels (`verify.py`), and only verified pairs make groups.

Groups start as the connected components of the verified pairs. A chain of pairs could join two images
that are not copies of each other (two crops of one photo that barely overlap, or a collage and two of
its pictures), so each component is then split around its keepers: the image to keep takes every member
verified a copy of it (pairs not yet checked are checked then), then the best of the rest does the same,
and so on. Every member of a group is thus a verified copy of its keeper, and carries that check.

`similarity_groups` groups by the similarity alone, as cheap evidence of copies where no file should be
read: outliers use it to leave an image's own copies out of its neighbours.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..store import RecordColumns
from .neighbours import NeighbourGraph
from .results import CopyCheck

PAIR_BLOCK = 4096

# Reads the cell descriptors of some rows: (rows, cells, cell_dim), L2-normalised per cell.
CellReader = Callable[[np.ndarray], np.ndarray]
# Similarities of the row pairs (a[i], b[i]): at most 1, and never above (1 + global cosine) / 2.
PairSimilarity = Callable[[np.ndarray, np.ndarray], np.ndarray]
# Checks whether the row pairs (first[i], second[i]) are copies from their pixels, in order.
PairVerifier = Callable[[np.ndarray, np.ndarray], Sequence[CopyCheck]]
# Which of `others` are copies of `keeper`: a mask, and the evidence for each of them.
CopyTest = Callable[[int, np.ndarray], tuple[np.ndarray, list]]


@dataclass(frozen=True)
class RowGroup:
    rows: np.ndarray  # the keeper first, then the rest by id
    similarities: np.ndarray  # of each row to the keeper
    checks: tuple[CopyCheck | None, ...] = ()  # each row's verification as a copy of the keeper (None for it)


@dataclass(frozen=True)
class CopyGroups:
    groups: list[RowGroup]
    candidate_pairs: int  # pairs whose pixels were checked
    unreadable: list[CopyCheck]  # checks that failed because a file could not be read


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


def candidate_pairs(graph: NeighbourGraph, table: RecordColumns, threshold: float,
                    similarity_of: PairSimilarity) -> tuple[np.ndarray, np.ndarray]:
    """The pairs of rows to check for copies, each once, as (first, second) with the one to keep first:
    the neighbour graph's links whose similarity reaches `threshold`, and the pairs of identical files."""
    a, b = _similar_links(graph, threshold, similarity_of)
    for group in exact_duplicate_groups(table):
        a = np.concatenate([a, np.full(len(group.rows) - 1, group.rows[0])])
        b = np.concatenate([b, group.rows[1:]])
    rank = keeper_rank(table)
    first, second = np.where(rank[a] < rank[b], a, b), np.where(rank[a] < rank[b], b, a)
    pairs = np.unique(np.stack([first, second], axis=1).reshape(-1, 2), axis=0)
    return pairs[:, 0], pairs[:, 1]


def copy_groups(graph: NeighbourGraph, table: RecordColumns, threshold: float, similarity_of: PairSimilarity,
                verify: PairVerifier) -> CopyGroups:
    """Groups of rows verified copies of the group's keeper, among the `candidate_pairs`."""
    first, second = candidate_pairs(graph, table, threshold, similarity_of)
    checks = dict(zip(zip(first.tolist(), second.tolist()), verify(first, second)))
    verified = np.array([check.verified for check in checks.values()], bool)

    def copies_of(keeper: int, others: np.ndarray) -> tuple[np.ndarray, list]:
        # Pairs are oriented keeper first, and a component's keeper ranks before all its members.
        missing = np.array([other for other in others.tolist() if (keeper, other) not in checks], np.int64)
        if len(missing):
            checks.update(zip(((keeper, other) for other in missing.tolist()),
                              verify(np.full(len(missing), keeper), missing)))
        found = [checks[keeper, other] for other in others.tolist()]
        return np.array([check.verified for check in found], bool), found

    groups = []
    for component in _components(first[verified], second[verified]):
        for rows, found in _split_around_keepers(component, table, copies_of):
            similarities = similarity_of(np.full(len(rows) - 1, rows[0]), rows[1:])
            groups.append(RowGroup(rows, np.concatenate([[1.0], similarities]).astype(np.float32),
                                   (None, *found)))
    return CopyGroups(groups, len(checks), [check for check in checks.values() if check.unreadable])


def similarity_groups(graph: NeighbourGraph, table: RecordColumns, threshold: float,
                      similarity_of: PairSimilarity) -> list[RowGroup]:
    """Groups of rows whose `similarity_of` with the group's keeper reaches `threshold`, found among the
    neighbour graph's links; no pixels are checked, so look-alikes group too."""

    def copies_of(keeper: int, others: np.ndarray) -> tuple[np.ndarray, list]:
        similarity = similarity_of(np.full(len(others), keeper), others)
        return similarity >= threshold, similarity.tolist()

    groups = []
    for component in _components(*_similar_links(graph, threshold, similarity_of)):
        for rows, similarities in _split_around_keepers(component, table, copies_of):
            groups.append(RowGroup(rows, np.array([1.0, *similarities], np.float32)))
    return groups


def keeper_first(rows: np.ndarray, table: RecordColumns) -> np.ndarray:
    """The rows with the one to keep first: the most pixels, then the largest file, then the lowest id;
    the rest follow in id order."""
    best = min(rows.tolist(), key=lambda r: (-table.pixels[r], -table.file_sizes[r], table.ids[r]))
    rest = sorted((r for r in rows.tolist() if r != best), key=lambda r: table.ids[r])
    return np.array([best, *rest], np.int64)


def keeper_rank(table: RecordColumns) -> np.ndarray:
    """Each row's place in the order `keeper_first` keeps by (0: the first to keep)."""
    order = np.lexsort((table.ids, -table.file_sizes, -table.pixels))
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    return rank


def _similar_links(graph: NeighbourGraph, threshold: float,
                   similarity_of: PairSimilarity) -> tuple[np.ndarray, np.ndarray]:
    # A link's similarity cannot exceed (1 + its global cosine) / 2, so only links with a global
    # cosine of at least 2 * threshold - 1 need scoring.
    a, b, _ = graph.edges(2 * threshold - 1)
    keep = similarity_of(a, b) >= threshold
    return a[keep], b[keep]


def _components(a: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
    """The connected components (of two rows or more) of the links (a[i], b[i])."""
    if not len(a):
        return []
    linked = np.unique(np.concatenate([a, b]))
    local = np.searchsorted(linked, np.stack([a, b]))
    adjacency = coo_matrix((np.ones(len(a), np.int8), (local[0], local[1])), shape=(len(linked),) * 2)
    count, component = connected_components(adjacency, directed=False)
    order = np.argsort(component, kind="stable")
    bounds = np.searchsorted(component[order], np.arange(count + 1))
    return [linked[order[bounds[c]:bounds[c + 1]]] for c in range(count)]


def _split_around_keepers(component: np.ndarray, table: RecordColumns,
                          copies_of: CopyTest) -> list[tuple[np.ndarray, list]]:
    """(rows, evidence of each row after the keeper) for each group the component splits into."""
    groups = []
    remaining = component
    while len(remaining) > 1:
        ordered = keeper_first(remaining, table)
        keeper, others = ordered[0], ordered[1:]
        close, evidence = copies_of(int(keeper), others)
        if close.any():
            groups.append((np.concatenate([[keeper], others[close]]),
                           [item for item, keep in zip(evidence, close) if keep]))
        remaining = others[~close]
    return groups
