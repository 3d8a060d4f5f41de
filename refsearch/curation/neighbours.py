"""The k-nearest-neighbour graph of the global descriptors, through FAISS, in bounded memory.

Queries go through FAISS in blocks, so memory is the vectors plus n x k neighbours, never n x n. Up to
`EXACT_LIMIT` images the search is exact; past it an inverted file (k-means lists, `nprobe` of them
scanned per query) keeps the cost close to linear in the collection. Near-duplicates sit very close
together, so they share a list and the approximation costs them next to nothing. With faiss-gpu and a
card, training, adding and searching run on the GPU (`refsearch.faiss_gpu`).
"""
from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

from .. import faiss_gpu

EXACT_LIMIT = 20_000
QUERY_BLOCK = 8192
IVF_NPROBE = 16


@dataclass(frozen=True)
class NeighbourGraph:
    """Row r is the image `ids[r]`; `neighbours[r]` are the rows of its k most similar other images,
    most similar first (-1 where the collection has fewer), with their cosine `similarities` (-inf)."""

    ids: np.ndarray
    neighbours: np.ndarray
    similarities: np.ndarray
    approximate: bool

    @property
    def k(self) -> int:
        return self.neighbours.shape[1]

    def __len__(self) -> int:
        return len(self.ids)

    def first(self, k: int) -> NeighbourGraph:
        return NeighbourGraph(self.ids, self.neighbours[:, :k], self.similarities[:, :k], self.approximate)

    def edges(self, min_similarity: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each pair of rows joined by a neighbour link of at least `min_similarity`, once, as
        (rows a, rows b, similarity) with a < b."""
        rows, columns = np.nonzero(self.similarities >= min_similarity)
        a, b = rows, self.neighbours[rows, columns]
        keep = b >= 0
        a, b, similarity = a[keep], b[keep], self.similarities[rows, columns][keep]
        low, high = np.minimum(a, b), np.maximum(a, b)
        pairs, first = np.unique(np.stack([low, high], axis=1), axis=0, return_index=True)
        return pairs[:, 0], pairs[:, 1], similarity[first]


def neighbour_graph(ids: np.ndarray, vectors: np.ndarray, k: int, *, exact_limit: int = EXACT_LIMIT,
                    nprobe: int = IVF_NPROBE) -> NeighbourGraph:
    """The k nearest other images of every image by inner product of its (L2-normalised) vectors."""
    n = len(ids)
    k = max(0, min(k, n - 1))
    vectors = np.ascontiguousarray(vectors, np.float32)
    if k == 0:
        return NeighbourGraph(np.asarray(ids), np.empty((n, 0), np.int64), np.empty((n, 0), np.float32),
                              approximate=False)
    approximate = n > exact_limit
    dim = vectors.shape[1]
    lists = min(int(4 * np.sqrt(n)), n // 39)  # FAISS wants 39 training points per list
    index = _ivf_index(dim, lists, nprobe) if approximate else faiss.IndexFlatIP(dim)
    if faiss_gpu.use_gpu(k + 1):
        index = faiss_gpu.to_gpu(index)  # moved before training, so that k-means runs on the card too
    if approximate:
        index.train(vectors[np.random.default_rng(0).choice(n, min(n, 64 * lists), replace=False)])
    index.add(vectors)
    neighbours = np.empty((n, k), np.int64)
    similarities = np.empty((n, k), np.float32)
    for start in range(0, n, QUERY_BLOCK):
        stop = min(n, start + QUERY_BLOCK)
        found_sims, found = index.search(vectors[start:stop], k + 1)
        # Drop each row itself; identical copies tie with it, so it need not come first. Rows whose
        # self was not returned (an approximate miss) drop their last neighbour instead.
        keep = found != np.arange(start, stop)[:, None]
        keep[keep.all(axis=1), -1] = False
        neighbours[start:stop] = found[keep].reshape(-1, k)
        similarities[start:stop] = found_sims[keep].reshape(-1, k)
    similarities[neighbours < 0] = -np.inf
    return NeighbourGraph(np.asarray(ids), neighbours, similarities, approximate)


def _ivf_index(dim: int, lists: int, nprobe: int) -> faiss.IndexIVFFlat:
    """An untrained inverted file of `lists` k-means lists, `nprobe` of them scanned per query."""
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, lists, faiss.METRIC_INNER_PRODUCT)
    index.own_fields = True
    quantizer.this.disown()
    index.nprobe = nprobe
    return index
