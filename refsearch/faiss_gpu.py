"""Where FAISS runs: on a GPU when faiss-gpu (the `[gpu]` extra) sees one, else on CPU.

faiss-cpu's `get_num_gpus` is 0, so one test covers both a missing package and a missing card. Only the
curation's kNN graph and k-means go to the GPU: the search indexes are memory-mapped files scanned in
place, which a GPU index would have to copy whole into the card's memory.
"""
from __future__ import annotations

from functools import cache

import faiss

# faiss-gpu's flat and IVF searches return at most this many neighbours a query.
GPU_MAX_K = 2048


def use_gpu(k: int = 1) -> bool:
    """Whether a search for `k` neighbours a query (and the training before it) should run on the GPU."""
    return faiss.get_num_gpus() > 0 and k <= GPU_MAX_K


def to_gpu(index: faiss.Index) -> faiss.Index:
    """A copy of `index` on the first GPU: trained or not, filled or empty; it keeps IVF's nprobe."""
    return faiss.index_cpu_to_gpu(_resources(), 0, index)


@cache
def _resources():
    # Each set of resources reserves scratch memory on the card: one for the process.
    return faiss.StandardGpuResources()
