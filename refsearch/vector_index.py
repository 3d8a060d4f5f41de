"""FAISS over the global descriptors: exact search inside chosen classes, and search across all of them.

The class-restricted search is an inverted-file index whose lists are the 1000 classes, searched with
the lists preassigned: a query scans exactly the images of the classes it names. The all-class search
scans every list while the collection is small, and uses a k-means IVF index past
`IndexConfig.exact_all_class_limit` images.
"""
from __future__ import annotations

import os
from pathlib import Path

import faiss
import numpy as np


class GlobalIndex:
    def __init__(self, by_class: faiss.IndexIVFFlat, all_classes: faiss.Index | None = None, nprobe: int = 32):
        self.by_class = by_class
        self.all_classes = all_classes
        if all_classes is not None:
            faiss.extract_index_ivf(all_classes).nprobe = nprobe
        self._sizes = np.array([by_class.invlists.list_size(c) for c in range(by_class.nlist)], np.int64)

    @property
    def dim(self) -> int:
        return self.by_class.d

    @property
    def ntotal(self) -> int:
        return int(self.by_class.ntotal)

    @property
    def kind(self) -> str:
        return "exact" if self.all_classes is None else "ivf"

    def class_sizes(self) -> np.ndarray:
        return self._sizes

    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray, classes: np.ndarray, num_classes: int,
              exact_limit: int, nprobe: int) -> "GlobalIndex":
        dim = vectors.shape[1] if vectors.size else 1
        quantizer = faiss.IndexFlatIP(dim)
        # Lists are assigned by class, never by the quantizer; it only needs one centroid per list.
        quantizer.add(np.zeros((num_classes, dim), np.float32))
        by_class = faiss.IndexIVFFlat(quantizer, dim, num_classes, faiss.METRIC_INNER_PRODUCT)
        by_class.own_fields = True
        quantizer.this.disown()
        if len(ids):
            x = np.ascontiguousarray(vectors, np.float32)
            xids = np.ascontiguousarray(ids, np.int64)
            assign = np.ascontiguousarray(classes, np.int64)
            by_class.add_core(len(x), faiss.swig_ptr(x), faiss.swig_ptr(xids), faiss.swig_ptr(assign))
        all_classes = None
        if len(ids) > exact_limit:
            nlist = max(1, min(len(ids), int(4 * np.sqrt(len(ids)))))
            all_classes = faiss.index_factory(dim, f"IDMap2,IVF{nlist},SQ8", faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(0)
            sample = vectors[rng.choice(len(vectors), min(len(vectors), 64 * nlist), replace=False)]
            all_classes.train(np.ascontiguousarray(sample, np.float32))
            all_classes.add_with_ids(np.ascontiguousarray(vectors, np.float32), np.ascontiguousarray(ids, np.int64))
        return cls(by_class, all_classes, nprobe)

    def search(self, queries: np.ndarray, k: int, classes: list[int] | None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (similarities, ids) per query; ids are -1 where fewer than k images exist.
        `classes=None` searches every class."""
        queries = np.ascontiguousarray(queries, np.float32)
        k = max(1, k)
        if classes is None:
            if self.all_classes is not None:
                return self.all_classes.search(queries, k)
            classes = np.flatnonzero(self._sizes).tolist()
        if not classes:
            return (np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64))
        self.by_class.nprobe = len(classes)
        assign = np.tile(np.asarray(classes, np.int64), (len(queries), 1))
        return self.by_class.search_preassigned(queries, k, assign, None)

    def save(self, folder: Path, generation: int) -> dict[str, str | None]:
        files = {"by_class": f"global-by-class.{generation}.faiss",
                 "all_classes": f"global-all.{generation}.faiss" if self.all_classes is not None else None}
        _write_atomic(self.by_class, folder / files["by_class"])
        if self.all_classes is not None:
            _write_atomic(self.all_classes, folder / files["all_classes"])
        return files

    @classmethod
    def load(cls, folder: Path, files: dict[str, str | None], nprobe: int) -> "GlobalIndex":
        by_class = faiss.read_index(str(folder / files["by_class"]))
        all_classes = faiss.read_index(str(folder / files["all_classes"])) if files.get("all_classes") else None
        return cls(by_class, all_classes, nprobe)


def _write_atomic(index: faiss.Index, path: Path) -> None:
    temporary = path.with_name(path.name + ".tmp")
    faiss.write_index(index, str(temporary))
    with open(temporary, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, path)
