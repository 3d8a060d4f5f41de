"""Segments: the stored descriptors of a run of images, as fixed-width arrays on disk.

A segment is appended batch by batch while it is being built (its committed row count lives in the
metadata store, so a crash leaves at most some uncommitted bytes, cut off on resume), then published
once and never changed: readers memory-map it. Rows hold, for each image,

- the cell descriptors as float16 (`cells.f16`, cells x cell_dim),
- the cell luminance histograms as uint16 counts scaled to a maximum of 65535 (`hist.u16`): the
  histogram correlation is scale-free, so this keeps it within about 1e-5 of the float histogram's,
- while building only: the global descriptor (`global.f32`) and the class (`labels.u16`), which go into
  the segment's class-partitioned FAISS file (`global.faiss`) when it is published.

A segment covers ids `first_id ... first_id + rows - 1`, one row each, unless it was merged by a
compaction that dropped removed rows; then `ids.i64` lists its rows' ids. Its entry in the manifest
records each of its files' size and checksum (`integrity.py`); the arrays' checksums are carried along
as rows are appended.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from . import layout
from .integrity import FileRecord, read_checked, record_of_file

HIST_SCALE = 65535
_LABELS = "labels.u16"


@dataclass(frozen=True)
class RowShape:
    cells: int
    cell_dim: int
    bins: int
    global_dim: int

    @property
    def cell_bytes(self) -> int:
        return self.cells * self.cell_dim * 2

    @property
    def hist_bytes(self) -> int:
        return self.cells * self.bins * 2


@dataclass(frozen=True)
class SegmentInfo:
    """A segment as the manifest lists it, with the records of its files (by name): while it is built, of
    its arrays as committed; once published, of every file it uses."""

    name: str
    first_id: int
    rows: int
    contiguous: bool = True
    files: dict[str, FileRecord] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, "first_id": self.first_id, "rows": self.rows, "contiguous": self.contiguous,
                "files": {name: record.to_dict() for name, record in sorted(self.files.items())}}

    @classmethod
    def from_dict(cls, data: dict) -> "SegmentInfo":
        return cls(data["name"], int(data["first_id"]), int(data["rows"]), bool(data.get("contiguous", True)),
                   {name: FileRecord.from_dict(record) for name, record in data.get("files", {}).items()})

    def file_records(self, shape: RowShape) -> dict[str, FileRecord]:
        """Every file of the published segment with its record; where none was recorded (index format 2),
        with the size its rows imply (none for its FAISS file)."""
        implied = {layout.CELLS: self.rows * shape.cell_bytes, layout.HISTOGRAMS: self.rows * shape.hist_bytes,
                   layout.GLOBAL_FAISS: None}
        if not self.contiguous:
            implied[layout.IDS] = self.rows * 8
        return {name: self.files.get(name) or FileRecord(size) for name, size in implied.items()}


def quantize_histograms(histograms: np.ndarray) -> np.ndarray:
    """(n, cells, bins) float histograms to uint16, each cell scaled so its largest bin is 65535."""
    peak = histograms.max(axis=-1, keepdims=True)
    scaled = histograms / np.where(peak > 0, peak, 1.0) * HIST_SCALE
    return np.rint(scaled).astype(np.uint16)


def histograms_from_stored(stored: np.ndarray) -> np.ndarray:
    counts = stored.astype(np.float32)
    total = counts.sum(axis=-1, keepdims=True)
    return counts / np.where(total > 0, total, 1.0)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SegmentAppender:
    """Appends rows to a segment being built. Opening cuts off bytes past the `rows` committed."""

    FILES = (layout.CELLS, layout.HISTOGRAMS, layout.GLOBAL_RAW, _LABELS)
    RECORDED = (layout.CELLS, layout.HISTOGRAMS)  # the build-time files go at publishing

    def __init__(self, folder: Path, info: SegmentInfo, shape: RowShape):
        self.folder = Path(folder)
        self.info = info
        self.shape = shape
        self.folder.mkdir(parents=True, exist_ok=True)
        self._row_bytes = {layout.CELLS: shape.cell_bytes, layout.HISTOGRAMS: shape.hist_bytes,
                           layout.GLOBAL_RAW: shape.global_dim * 4, _LABELS: 2}
        self._handles = {}
        records = dict(info.files)
        for name in self.FILES:
            path = self.folder / name
            with open(path, "ab"):
                pass
            handle = open(path, "r+b")
            handle.truncate(info.rows * self._row_bytes[name])
            handle.seek(0, os.SEEK_END)
            self._handles[name] = handle
            recorded = records.get(name)
            if name in self.RECORDED and (recorded is None or recorded.size != info.rows * self._row_bytes[name]):
                records[name] = record_of_file(path)  # resuming a build whose writer kept no record
        self.info = replace(info, files={name: records[name] for name in self.RECORDED})

    @property
    def rows(self) -> int:
        return self.info.rows

    def append(self, global_vectors: np.ndarray, cells: np.ndarray, histograms: np.ndarray,
               labels: np.ndarray) -> SegmentInfo:
        """Write rows (not yet committed: the caller commits the returned row count with their records)."""
        arrays = {layout.CELLS: np.ascontiguousarray(cells, np.float16),
                  layout.HISTOGRAMS: quantize_histograms(histograms),
                  layout.GLOBAL_RAW: np.ascontiguousarray(global_vectors, np.float32),
                  _LABELS: np.ascontiguousarray(labels, np.uint16)}
        records = dict(self.info.files)
        for name, array in arrays.items():
            handle = self._handles[name]
            data = array.tobytes()
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
            if name in records:
                records[name] = records[name].extended(data)
        self.info = replace(self.info, rows=self.info.rows + len(global_vectors), files=records)
        return self.info

    def close(self) -> None:
        for handle in self._handles.values():
            # Every append is flushed before it returns; what a failed one (a full disk) left in the
            # buffer was never committed, and closing drops it without raising again.
            with contextlib.suppress(OSError):
                handle.close()
        self._handles = {}


def publish_segment(folder: Path, info: SegmentInfo, vectors: np.ndarray, labels: np.ndarray,
                    num_classes: int) -> SegmentInfo:
    """Write the segment's FAISS file from its build-time global descriptors and labels
    (`build_time_vectors`), and make its arrays durable; returns the segment with its FAISS file recorded."""
    from .vector_index import write_class_partitioned

    folder = Path(folder)
    ids = np.arange(info.first_id, info.first_id + info.rows, dtype=np.int64)
    faiss_record = write_class_partitioned(folder / layout.GLOBAL_FAISS, vectors, ids, labels, num_classes)
    for name in (layout.CELLS, layout.HISTOGRAMS):
        _fsync(folder / name)
    return replace(info, files={**info.files, layout.GLOBAL_FAISS: faiss_record})


def drop_build_files(folder: Path) -> None:
    """The build-time copies go once the FAISS file holds the global descriptors."""
    for name in (layout.GLOBAL_RAW, _LABELS):
        (Path(folder) / name).unlink(missing_ok=True)


def build_time_vectors(folder: Path, info: SegmentInfo, shape: RowShape) -> tuple[np.ndarray, np.ndarray]:
    """(global descriptors, class labels) of a segment not yet published."""
    vectors = np.fromfile(Path(folder) / layout.GLOBAL_RAW, np.float32, info.rows * shape.global_dim)
    labels = np.fromfile(Path(folder) / _LABELS, np.uint16, info.rows).astype(np.int64)
    return vectors.reshape(info.rows, shape.global_dim), labels


def write_merged(folder: Path, info: SegmentInfo, ids: np.ndarray, cells: np.ndarray, stored_hist: np.ndarray,
                 vectors: np.ndarray, labels: np.ndarray, num_classes: int) -> SegmentInfo:
    """A compacted segment, written whole: rows in id order, with its ids file; returns it with its files
    recorded."""
    from .vector_index import write_class_partitioned

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    records = {}
    for name, array in ((layout.CELLS, np.ascontiguousarray(cells, np.float16)),
                        (layout.HISTOGRAMS, np.ascontiguousarray(stored_hist, np.uint16)),
                        (layout.IDS, np.ascontiguousarray(ids, np.int64))):
        with open(folder / name, "wb") as handle:
            handle.write(memoryview(array).cast("B"))
            handle.flush()
            os.fsync(handle.fileno())
        records[name] = FileRecord.of_bytes(array)
    records[layout.GLOBAL_FAISS] = write_class_partitioned(folder / layout.GLOBAL_FAISS, vectors, ids, labels,
                                                           num_classes)
    return replace(info, files=records)


class Segment:
    """A published segment, memory-mapped for reading."""

    def __init__(self, folder: Path, info: SegmentInfo, shape: RowShape):
        self.folder = Path(folder)
        self.info = info
        self.shape = shape
        rows = info.rows
        self.cells = np.memmap(self.folder / layout.CELLS, np.float16, "r", shape=(rows, shape.cells, shape.cell_dim)) \
            if rows else np.empty((0, shape.cells, shape.cell_dim), np.float16)
        self.histograms = np.memmap(self.folder / layout.HISTOGRAMS, np.uint16, "r", shape=(rows, shape.cells, shape.bins)) \
            if rows else np.empty((0, shape.cells, shape.bins), np.uint16)
        self.ids = None if info.contiguous else np.frombuffer(
            read_checked(self.folder / layout.IDS, info.file_records(shape)[layout.IDS]), np.int64)

    @property
    def last_id(self) -> int:
        if self.info.contiguous:
            return self.info.first_id + self.info.rows - 1
        return int(self.ids[-1]) if len(self.ids) else self.info.first_id - 1

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        if self.ids is None:
            return ids - self.info.first_id
        return np.searchsorted(self.ids, ids)

    def faiss_path(self) -> Path:
        return self.folder / layout.GLOBAL_FAISS


def gather_rows(segments: Sequence[Segment], shape: RowShape, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The stored cell descriptors (n, cells, cell_dim) float16 and histograms (n, cells, bins) uint16 of
    `ids`, in their order, from published `segments` (disjoint, in id order); each segment's rows are read
    in file order, which memory-mapped files serve fastest."""
    ids = np.asarray(ids, np.int64)
    cells = np.empty((len(ids), shape.cells, shape.cell_dim), np.float16)
    histograms = np.empty((len(ids), shape.cells, shape.bins), np.uint16)
    first_ids = np.array([s.info.first_id for s in segments], np.int64)
    owner = np.searchsorted(first_ids, ids, side="right") - 1
    for number in np.unique(owner):
        inside = np.flatnonzero(owner == number)
        segment = segments[number]
        rows = segment.rows_of(ids[inside])
        order = np.argsort(rows)
        cells[inside[order]] = segment.cells[rows[order]]
        histograms[inside[order]] = segment.histograms[rows[order]]
    return cells, histograms
