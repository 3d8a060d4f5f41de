"""k-means clusters of the global descriptors (FAISS), each with the member nearest its centre."""
from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

from .. import faiss_gpu
from ..errors import InvalidArgumentError
from .neighbours import QUERY_BLOCK


@dataclass(frozen=True)
class ClusterAssignment:
    members: list[np.ndarray]  # rows per cluster, nearest the centre first; largest cluster first
    cohesion: list[float]  # mean cosine of the members to their centre


def default_cluster_count(images: int) -> int:
    return max(1, min(images, round(np.sqrt(images / 2))))


def kmeans_clusters(vectors: np.ndarray, n: int, *, seed: int = 0,
                    iterations: int = 20) -> ClusterAssignment:
    """Spherical k-means into `n` clusters (fewer when some end up empty). FAISS trains on at most 256
    vectors per centre, so the cost grows with n, not with the collection."""
    count, dim = vectors.shape
    if not 1 <= n <= count:
        raise InvalidArgumentError(f"cannot make {n} clusters of {count} images; ask for 1 to {count}")
    vectors = np.ascontiguousarray(vectors, np.float32)
    kmeans = faiss.Kmeans(dim, n, niter=iterations, seed=seed, spherical=True, verbose=False,
                          min_points_per_centroid=1, gpu=faiss_gpu.use_gpu())
    kmeans.train(vectors)  # spherical: unit centres in an inner-product index, so scores are cosines
    assigned = np.empty(count, np.int64)
    similarity = np.empty(count, np.float32)
    for start in range(0, count, QUERY_BLOCK):
        sims, nearest = kmeans.index.search(vectors[start:start + QUERY_BLOCK], 1)
        assigned[start:start + QUERY_BLOCK] = nearest[:, 0]
        similarity[start:start + QUERY_BLOCK] = sims[:, 0]
    order = np.lexsort((-similarity, assigned))
    bounds = np.searchsorted(assigned[order], np.arange(n + 1))
    members = [order[bounds[c]:bounds[c + 1]] for c in range(n) if bounds[c + 1] > bounds[c]]
    members.sort(key=len, reverse=True)
    return ClusterAssignment(members, [float(similarity[m].mean()) for m in members])
