"""FAISS over the global descriptors: exact search inside chosen classes, and search across all of them.

Each segment's descriptors are one inverted file whose lists are the 1000 classes: the one stored copy of
the global descriptors, as float16. A reader memory-maps every segment's file and searches them in place,
so opening costs milliseconds whatever the size, and adding images is writing a new segment's file,
never rebuilding the others. Removed images are tombstones, skipped through an id selector.

A class-restricted search scans exactly the images of the classes it names. The all-class search scans
every list while the collection is small; past `SearchSettings.exact_all_class_limit` it scans only the
lists whose class mean is nearest the query: the classes are the inverted file's k-means.
"""
from __future__ import annotations

import io
from pathlib import Path

import faiss
import numpy as np
from faiss.contrib.inspect_tools import get_invlist

from .errors import IndexStateError
from .integrity import FileRecord, damaged, read_parsed, replacing, write_file


def _empty_ivf(dim: int, num_classes: int) -> faiss.IndexIVFScalarQuantizer:
    """An inverted file of float16 vectors, one list per class. Lists are assigned, never found by the
    quantizer, so its centroids are zeros; codes are vectors, not residuals, so they read the same
    whatever the lists' centroids."""
    quantizer = faiss.IndexFlatIP(dim)
    quantizer.add(np.zeros((num_classes, dim), np.float32))
    index = faiss.IndexIVFScalarQuantizer(quantizer, dim, num_classes, faiss.ScalarQuantizer.QT_fp16,
                                          faiss.METRIC_INNER_PRODUCT, False)
    index.own_fields = True
    quantizer.this.disown()
    index.is_trained = True  # float16 codes need no training, and the lists are assigned, not learned
    return index


def write_class_partitioned(path: Path, vectors: np.ndarray, ids: np.ndarray, labels: np.ndarray,
                            num_classes: int) -> FileRecord:
    """Write `vectors` as an inverted file with one list per class (atomically); returns its record."""
    dim = vectors.shape[1]
    index = _empty_ivf(dim, num_classes)
    if len(ids):
        x = np.ascontiguousarray(vectors, np.float32)
        xids = np.ascontiguousarray(ids, np.int64)
        assign = np.ascontiguousarray(labels, np.int64)
        index.add_core(len(x), faiss.swig_ptr(x), faiss.swig_ptr(xids), faiss.swig_ptr(assign))
    # Written through Python rather than by FAISS's own file writer, which cannot report a failure to
    # close the file (a full disk would leave it cut short, silently); the checksum is taken on the way.
    record = FileRecord(0, 0)
    with replacing(path) as handle:
        def write(chunk: bytes) -> None:
            nonlocal record
            handle.write(chunk)
            record = record.extended(chunk)

        faiss.write_index(index, faiss.PyCallbackIOWriter(write))
    return record


def _array_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def save_array(path: Path, array: np.ndarray) -> FileRecord:
    """An array saved as .npy, atomically; returns its record."""
    return write_file(path, _array_bytes(array))


def load_array(path: Path, record: FileRecord, ndim: int) -> np.ndarray:
    """A .npy file of `ndim` dimensions, checked against its record; IndexDamagedError naming it when it
    cannot be."""
    array = read_parsed(path, record, lambda data: np.load(io.BytesIO(data), allow_pickle=False))
    if array.ndim != ndim:
        raise damaged(path, f"holds a {array.ndim}-d array where a {ndim}-d one was written")
    return array


def read_class_partitioned(path: Path, rows: int) -> faiss.IndexIVF:
    """A segment's inverted file, memory-mapped; IndexDamagedError naming it when FAISS cannot read it or
    it does not hold the segment's `rows`."""
    try:
        index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP)
    except RuntimeError as exc:
        raise damaged(path, f"cannot be read by FAISS ({str(exc).strip().splitlines()[-1]})") from None
    if not isinstance(index, faiss.IndexIVF):
        raise damaged(path, f"holds a FAISS {type(index).__name__} where an inverted file was written")
    listed = sum(index.invlists.list_size(number) for number in range(index.nlist))
    if index.ntotal != rows or listed != rows:
        raise damaged(path, f"holds {listed} descriptors where the segment has {rows}")
    return index


class ClassStats:
    """Per-class sums and counts of the live global descriptors: the class sizes, and the class means
    the all-class search probes."""

    def __init__(self, sums: np.ndarray, counts: np.ndarray):
        self.sums = sums
        self.counts = counts

    @classmethod
    def empty(cls, num_classes: int, dim: int) -> "ClassStats":
        return cls(np.zeros((num_classes, dim), np.float64), np.zeros(num_classes, np.int64))

    def add(self, vectors: np.ndarray, labels: np.ndarray, sign: int = 1) -> None:
        np.add.at(self.sums, labels, sign * np.asarray(vectors, np.float64))
        np.add.at(self.counts, labels, sign)

    def centroids(self) -> np.ndarray:
        means = self.sums / np.maximum(self.counts, 1)[:, None]
        norms = np.linalg.norm(means, axis=1, keepdims=True)
        return (means / np.where(norms > 0, norms, 1.0)).astype(np.float32)

    def save(self, path: Path) -> FileRecord:
        return save_array(path, np.concatenate([self.counts[:, None].astype(np.float64), self.sums], axis=1))

    @classmethod
    def load(cls, path: Path, record: FileRecord) -> "ClassStats":
        data = load_array(path, record, 2)
        return cls(np.ascontiguousarray(data[:, 1:]), data[:, 0].astype(np.int64))


class GlobalIndex:
    """The published segments' inverted files, memory-mapped, less the tombstones. A search assigns the
    query its lists once (the named classes, or the nearest class means), scans those lists in every
    segment in place, and merges the segments' top-k."""

    def __init__(self, faiss_files: list[tuple[Path, int]], stats: ClassStats, tombstones: np.ndarray, dim: int):
        """`faiss_files`: each segment's FAISS file and rows."""
        self.dim = dim
        self.stats = stats
        self.tombstones = np.asarray(tombstones, np.int64)
        self._segments = [read_class_partitioned(path, rows) for path, rows in faiss_files]
        self._means = faiss.IndexFlatIP(dim)
        self._means.add(stats.centroids())
        self._selector = None
        if len(self.tombstones):
            self._removed = faiss.IDSelectorBatch(self.tombstones)
            self._selector = faiss.IDSelectorNot(self._removed)

    @property
    def ntotal(self) -> int:
        return int(self.stats.counts.sum())

    def class_sizes(self) -> np.ndarray:
        return self.stats.counts

    def search(self, queries: np.ndarray, k: int, classes: list[int] | None,
               probes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (similarities, ids) per query; ids are -1 (similarities -inf) where fewer than k images
        exist. `classes` names the classes to scan; None is every class, all of them or (with `probes`)
        the `probes` classes whose mean is nearest each query."""
        queries = np.ascontiguousarray(queries, np.float32)
        n, k = len(queries), max(1, k)
        if classes is None and probes is not None:
            _, assign = self._means.search(queries, min(probes, len(self.stats.counts)))
        else:
            chosen = np.flatnonzero(self.stats.counts) if classes is None else np.asarray(classes, np.int64)
            assign = np.tile(chosen.astype(np.int64), (n, 1))
        similarities = np.full((n, k), -np.inf, np.float32)
        ids = np.full((n, k), -1, np.int64)
        if assign.shape[1] == 0 or not self._segments:
            return similarities, ids
        assign = np.ascontiguousarray(assign, np.int64)
        coarse = np.zeros(assign.shape, np.float32)
        params = faiss.SearchParametersIVF(nprobe=assign.shape[1])
        if self._selector is not None:
            params.sel = self._selector
        parts_sims, parts_ids = [], []
        for segment in self._segments:
            found_sims = np.empty((n, k), np.float32)
            found_ids = np.empty((n, k), np.int64)
            segment.search_preassigned_c(n, faiss.swig_ptr(queries), k, faiss.swig_ptr(assign),
                                         faiss.swig_ptr(coarse), faiss.swig_ptr(found_sims),
                                         faiss.swig_ptr(found_ids), False, params)
            parts_sims.append(found_sims)
            parts_ids.append(found_ids)
        all_sims, all_ids = np.concatenate(parts_sims, axis=1), np.concatenate(parts_ids, axis=1)
        all_sims[all_ids < 0] = -np.inf
        order = np.argsort(-all_sims, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(all_sims, order, axis=1), np.take_along_axis(all_ids, order, axis=1)

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """Every live image's (id, global descriptor), ids ascending."""
        id_parts, vector_parts = [], []
        for segment in self._segments:
            for list_number in range(segment.nlist):
                if segment.invlists.list_size(list_number):
                    ids, codes = get_invlist(segment.invlists, list_number)
                    id_parts.append(np.array(ids))
                    vector_parts.append(np.array(codes).view(np.float16).reshape(-1, self.dim).astype(np.float32))
        if not id_parts:
            return np.empty(0, np.int64), np.empty((0, self.dim), np.float32)
        ids, vectors = np.concatenate(id_parts), np.concatenate(vector_parts)
        keep = ~np.isin(ids, self.tombstones)
        order = np.argsort(ids[keep], kind="stable")
        return ids[keep][order], vectors[keep][order]

    def vectors_of(self, ids: list[int], labels: list[int]) -> np.ndarray:
        """The global descriptors of images known to be in the given classes (their stored labels)."""
        ids, labels = np.asarray(ids, np.int64), np.asarray(labels, np.int64)
        out = np.empty((len(ids), self.dim), np.float32)
        found = np.zeros(len(ids), bool)
        for label in np.unique(labels):  # each class's list is read once per segment
            wanted = np.flatnonzero(labels == label)
            for segment in self._segments:
                if segment.invlists.list_size(int(label)) == 0:
                    continue
                list_ids, codes = get_invlist(segment.invlists, int(label))
                list_ids = np.asarray(list_ids)
                order = np.argsort(list_ids)
                at = np.searchsorted(list_ids[order], ids[wanted]).clip(0, len(list_ids) - 1)
                hit = list_ids[order][at] == ids[wanted]
                rows = order[at[hit]]
                out[wanted[hit]] = np.asarray(codes)[rows].view(np.float16).reshape(-1, self.dim)
                found[wanted[hit]] = True
        if not found.all():
            missing = ids[~found].tolist()
            raise IndexStateError(f"no global descriptor stored for ids {missing[:5]}", "the index is damaged; rebuild it")
        return out
