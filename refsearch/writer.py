"""`IndexWriter`: the one object that changes an index (build, update, remove, compact).

It holds the index's writer lock while open. Everything it writes goes into the *pending* generation:
new segments appended batch by batch, each batch committed with its records in one LMDB transaction,
and removals marked in the records. `publish()` writes the new segments' FAISS files, the class
statistics and tombstones, and then replaces the manifest atomically: readers that opened the previous
generation keep answering from it, and a reader opened afterwards sees the new one.

A writer that dies leaves its pending work committed up to its last batch; the next writer resumes it.
A full disk stops it the same way, with DiskFullError: the published generation is untouched, and
the same command run again once there is space resumes the work.
"""
from __future__ import annotations

import contextlib
import errno
import functools
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import classes, layout
from .config import IndexConfig, SearchSettings
from .errors import ConfigMismatchError, DiskFullError, IndexStateError, InvalidArgumentError
from .integrity import read_parsed, record_of_file, write_file
from .lock import LockHolder, WriterLock
from .manifest import GenerationFile, Manifest
from .projection import Projections
from .segments import (
    RowShape,
    Segment,
    SegmentAppender,
    SegmentInfo,
    build_time_vectors,
    drop_build_files,
    gather_rows,
    publish_segment,
    write_merged,
)
from .store import FileState, ImageRecord, MetadataWriter, SkippedFile
from .vector_index import ClassStats, GlobalIndex, load_array, save_array

# Rows per segment (16 GB at the default configuration): a build of ImageNet's 1.28M images makes one
# segment, a search scans each segment once, and appending to a large segment costs no more.
SEGMENT_ROWS = 1 << 21


@dataclass(frozen=True)
class PublishSummary:
    generation: int
    images: int
    added: int
    removed: int


@contextlib.contextmanager
def disk_full_reported(index: Path) -> Iterator[None]:
    """Turn a full disk (or quota) met while writing `index` into DiskFullError."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        existing = next(folder for folder in (Path(index), *Path(index).absolute().parents) if folder.exists())
        free = shutil.disk_usage(existing).free
        what = "disk quota is exceeded" if exc.errno == errno.EDQUOT else "disk is full"
        raise DiskFullError(f"the {what} where {index} is written ({free / 1e6:.1f} MB free)",
                            "free some space and run the same command again: it resumes from its last "
                            "committed batch, and the index answers from its last published generation "
                            "meanwhile") from None


def _reports_full_disk(method):
    @functools.wraps(method)
    def reporting(self, *args, **kwargs):
        with disk_full_reported(self.path):
            return method(self, *args, **kwargs)

    return reporting


def _delete_old_index(output: Path) -> None:
    """Remove an index folder's contents (for --rebuild), keeping the folder and its lock file."""
    for entry in output.iterdir():
        if entry.name == layout.LOCK:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


class IndexWriter:
    """Open with `IndexWriter.open`; use as a context manager, which releases the lock."""

    def __init__(self, path: Path, lock: WriterLock, manifest: Manifest, metadata: MetadataWriter):
        self.path = path
        self.lock = lock
        self.manifest = manifest
        self.metadata = metadata
        self.projections = self._load_projections()
        pending = metadata.info("pending")
        self._next_id = metadata.info("next_id", 0)
        self._next_segment = metadata.info("next_segment", 0)
        if pending is not None and pending["generation"] > manifest.generation:
            self.generation = pending["generation"]
            self._segments = [SegmentInfo.from_dict(s) for s in pending["segments"]]
        else:
            if pending is not None:  # published, but not yet forgotten when the last writer stopped
                self._finish_pending([SegmentInfo.from_dict(s) for s in pending["segments"]])
            self.generation = manifest.generation + 1
            self._segments = []
        metadata.generation = self.generation
        self._appender: SegmentAppender | None = None
        self._added = 0
        self._drop_orphan_segments()

    def _drop_orphan_segments(self) -> None:
        """Segment folders neither published nor pending: what a compaction that died left."""
        folder = self.path / layout.SEGMENTS
        known = {s.name for s in self.manifest.segments} | {s.name for s in self._segments}
        if folder.is_dir():
            for entry in folder.iterdir():
                if entry.name not in known:
                    shutil.rmtree(entry, ignore_errors=True)

    # -- opening and closing -------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike, *, config: IndexConfig | None = None, source: str | os.PathLike | None = None,
             search: SearchSettings | None = None, create: bool = False, rebuild: bool = False,
             wait: bool = False, on_wait=None, command: str = "refsearch") -> "IndexWriter":
        """Take the writer lock of the index at `path` (waiting for another writer with `wait`, else
        raising IndexLockedError naming it). With `create`, a missing index is created with `config`,
        `source` and `search`; `rebuild` discards an existing one. An existing index refuses another
        build configuration or source folder."""
        path = Path(path)
        if not create and not Manifest.exists(path):
            Manifest.load(path)  # raises the right "no such index" / "not an index" error
        # A folder with our lock file but no manifest yet is an index another writer is creating.
        if create and not Manifest.exists(path) and path.exists() and (
                not path.is_dir() or (not (path / layout.LOCK).exists() and any(path.iterdir()))):
            raise IndexStateError(f"{path} exists and is not a refsearch index", "choose another output")
        with disk_full_reported(path):
            path.mkdir(parents=True, exist_ok=True)
            lock = WriterLock(path, command).acquire(wait=wait, on_wait=on_wait)
            try:
                manifest = cls._manifest(path, config, source, search, create, rebuild)
                manifest.check_files(path, whole=True)  # no writer builds on a damaged generation
                metadata = MetadataWriter(path / layout.METADATA, Path(manifest.source), manifest.generation,
                                          create=manifest.generation == 0)
                try:
                    return cls(path, lock, manifest, metadata)
                except BaseException:
                    metadata.close()
                    raise
            except BaseException:
                lock.release()
                raise

    @staticmethod
    def _manifest(path: Path, config: IndexConfig | None, source, search: SearchSettings | None, create: bool,
                  rebuild: bool) -> Manifest:
        source = str(Path(source).resolve()) if source is not None else None
        if rebuild:
            _delete_old_index(path)
        if not Manifest.exists(path):
            if (path / layout.METADATA).exists() or (path / layout.SEGMENTS).exists():
                Manifest.load(path)  # raises: an index that lost its manifest is damaged, not new
            if config is None or source is None:
                raise IndexStateError(f"{path} is not a refsearch index")
            manifest = Manifest(config=config, source=source, search=search or SearchSettings())
            manifest.save(path)
            return manifest
        manifest = Manifest.load(path)
        if config is not None:
            differences = manifest.config.differences(config)
            if differences:
                raise ConfigMismatchError(f"{path} was built with another configuration ({'; '.join(differences)})",
                                          "pass --rebuild to rebuild it, or choose another output")
        if source is not None and manifest.source != source:
            raise ConfigMismatchError(f"{path} indexes {manifest.source}, not {source}",
                                      "pass --rebuild to replace it, or choose another output")
        return manifest

    def close(self) -> None:
        if self._appender is not None:
            self._appender.close()
            self._appender = None
        self.metadata.close()
        self.lock.release()

    def __enter__(self) -> "IndexWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def config(self) -> IndexConfig:
        return self.manifest.config

    @property
    def took_over(self) -> LockHolder | None:
        """The holder of a lock left by a process that died, which this writer took over."""
        return self.lock.took_over

    @property
    def has_pending_build(self) -> bool:
        """An interrupted build left images committed but not published, or its PCA sample."""
        return any(s.rows for s in self._segments) or (self.path / layout.PCA_SAMPLE).is_dir()

    def pending_removals(self) -> np.ndarray:
        """Ids removed but not yet published (by this writer or one that died)."""
        return self.metadata.pending_removals()

    # -- what is there -------------------------------------------------------------------------
    def file_states(self) -> dict[str, FileState]:
        """The files indexed as of the pending generation (published and resumed work)."""
        return self.metadata.file_states()

    def skipped(self) -> list[SkippedFile]:
        return self.metadata.skipped()

    def records(self, ids: Iterable[int]) -> list[ImageRecord]:
        return self.metadata.get_many(ids)

    # -- writing -------------------------------------------------------------------------------
    def _load_projections(self) -> Projections | None:
        """The published projections, checked; or those set by an unpublished first build."""
        published = self.manifest.files.get("projections")
        if published is not None:
            return read_parsed(self.path / published.name, published.record, Projections.from_bytes)
        unpublished = self.path / layout.PROJECTIONS
        return Projections.from_bytes(unpublished.read_bytes()) if unpublished.exists() else None

    @_reports_full_disk
    def set_projections(self, projections: Projections) -> None:
        """The PCA projections the stored descriptors are reduced with; set once, before any add."""
        if self.projections is not None:
            raise IndexStateError(f"{self.path} already has its projections")
        write_file(self.path / layout.PROJECTIONS, projections.to_bytes())
        self.projections = projections

    def _shape(self) -> RowShape:
        if self.projections is None:
            raise IndexStateError(f"{self.path} has no projections yet; set them before adding images")
        return RowShape(self.config.cells, self.projections.cells.output_dim, self.config.hist_bins,
                        self.projections.global_.output_dim)

    @property
    def next_id(self) -> int:
        """The id the next `add` gives its first record, the rest following (ids are never reused, so a
        stale id never names a new image; ids not committed by an add are given out again after a crash)."""
        return self._next_id

    @_reports_full_disk
    def add(self, records: list[ImageRecord], global_vectors: np.ndarray, cells: np.ndarray,
            histograms: np.ndarray) -> None:
        """Store images: their records (ids from `next_id` on, in order) and their descriptors, in the
        stored form (projected). Committed when this returns."""
        if not records:
            return
        if records[0].id != self._next_id or records[-1].id != self._next_id + len(records) - 1:
            raise InvalidArgumentError("records must take the ids from next_id on, in order")
        labels = np.array([classes.class_index(r.label) for r in records], np.int64)
        start = 0
        while start < len(records):
            appender = self._open_appender()
            stop = min(len(records), start + SEGMENT_ROWS - appender.rows)
            info = appender.append(global_vectors[start:stop], cells[start:stop], histograms[start:stop],
                                   labels[start:stop])
            self._segments[-1] = info
            self._next_id = records[stop - 1].id + 1
            self.metadata.add(records[start:stop], self.generation, {
                "next_id": self._next_id, "next_segment": self._next_segment, "pending": self._pending()})
            start = stop
        self._added += len(records)

    def _pending(self) -> dict:
        return {"generation": self.generation, "segments": [s.to_dict() for s in self._segments]}

    def _open_appender(self) -> SegmentAppender:
        if self._appender is not None and self._appender.rows < SEGMENT_ROWS:
            return self._appender
        if self._appender is not None:
            self._appender.close()
        if self._segments and self._segments[-1].rows < SEGMENT_ROWS:
            info = self._segments[-1]  # resuming an interrupted segment
        else:
            info = SegmentInfo(f"s{self._next_segment:06d}", self._next_id, 0)
            self._next_segment += 1
            self._segments.append(info)
        self._appender = SegmentAppender(layout.segment_dir(self.path, info.name), info, self._shape())
        return self._appender

    @_reports_full_disk
    def remove(self, ids: Iterable[int], keep_out: bool = False) -> list[ImageRecord]:
        """Take images out as of the pending generation; returns their records. Ids the index does not
        hold are ignored (check with `records` first to refuse them). With `keep_out`, their files are
        remembered as removed from the index, so that a build does not add them back while unchanged."""
        removed = self.metadata.mark_removed(ids, self.generation, keep_out)
        self.metadata.set_info(pending=self._pending())
        return removed

    @_reports_full_disk
    def mark_skipped(self, skipped: list[SkippedFile]) -> None:
        self.metadata.mark_skipped(skipped)

    @_reports_full_disk
    def forget_skipped(self, paths: Iterable[str]) -> None:
        self.metadata.forget_skipped(paths)

    # -- publishing ----------------------------------------------------------------------------
    def _published_index(self) -> GlobalIndex | None:
        manifest = self.manifest
        if not manifest.segments:
            return None
        return GlobalIndex([(layout.segment_dir(self.path, s.name) / layout.GLOBAL_FAISS, s.rows)
                            for s in manifest.segments],
                           self._published_stats(), np.empty(0, np.int64), manifest.dims["global"])

    def _published_stats(self) -> ClassStats:
        published = self.manifest.files.get("class_stats")
        if published:
            return ClassStats.load(self.path / published.name, published.record)
        return ClassStats.empty(classes.num_classes(), self._shape().global_dim)

    def _published_tombstones(self) -> np.ndarray:
        published = self.manifest.files.get("tombstones")
        return load_array(self.path / published.name, published.record, 1) if published else np.empty(0, np.int64)

    @_reports_full_disk
    def publish(self) -> PublishSummary:
        """Make the pending work visible as a new generation (a new manifest, written atomically)."""
        if self._appender is not None:
            self._appender.close()
            self._appender = None
        removals = self.metadata.pending_removals()
        new_segments = [s for s in self._segments if s.rows]  # only an index with projections has rows
        stats = self._published_stats() if self.projections is not None else None
        if stats is not None:
            shape = self._shape()
            new_vectors = {}
            published = []
            for info in new_segments:
                folder = layout.segment_dir(self.path, info.name)
                vectors, labels = new_vectors[info.name] = build_time_vectors(folder, info, shape)
                stats.add(vectors, labels)
                published.append(publish_segment(folder, info, vectors, labels, classes.num_classes()))
            if len(removals):
                vectors, labels = self._vectors_of(removals, new_segments, new_vectors, shape)
                stats.add(vectors, labels, sign=-1)
            new_segments = published
        tombstones = np.union1d(self._published_tombstones(), removals).astype(np.int64)
        files = {}
        if len(tombstones):
            name = layout.tombstones(self.generation)
            files["tombstones"] = GenerationFile(name, save_array(self.path / name, tombstones))
        _write_skipped_report(self.path / layout.SKIPPED_REPORT, self.metadata.skipped())
        replaced = self._save_generation(self.manifest.segments + new_segments, stats, files, len(tombstones))
        summary = PublishSummary(self.generation, self.manifest.images, self._added, len(removals))
        self._finish_pending(self._segments)
        self._forget_files(replaced)
        self._added = 0
        return summary

    def _save_generation(self, segments: list[SegmentInfo], stats: ClassStats | None, files: dict,
                         tombstones: int) -> set[str]:
        """Publish the pending generation: its class statistics saved beside `files`, then the manifest
        naming them, replaced atomically. Returns the previous generation's file names it no longer uses."""
        manifest = self.manifest
        old_files = {file.name for file in manifest.files.values()}
        if stats is not None:
            name = layout.class_stats(self.generation)
            files = {**files, "class_stats": GenerationFile(name, stats.save(self.path / name))}
        if self.projections is not None:  # written once; recorded when first published
            files["projections"] = manifest.files.get("projections") or GenerationFile(
                layout.PROJECTIONS, record_of_file(self.path / layout.PROJECTIONS))
        manifest.generation = self.generation
        if self.projections is not None:
            manifest.dims = {"global": self.projections.global_.output_dim,
                             "cell": self.projections.cells.output_dim, "fitted_on": self.projections.fitted_on}
        manifest.segments = segments
        manifest.files = files
        manifest.images = int(stats.counts.sum()) if stats is not None else 0
        manifest.classes = int(np.count_nonzero(stats.counts)) if stats is not None else 0
        manifest.tombstones = tombstones
        left_out = self.metadata.skipped()
        manifest.removed_files = sum(item.removed for item in left_out)
        manifest.skipped = len(left_out) - manifest.removed_files
        manifest.save(self.path)
        return old_files - {file.name for file in files.values()}

    def _forget_files(self, names: set[str]) -> None:
        """After a publish: the old generation's small files go, and the next generation is pending."""
        for name in names:
            (self.path / name).unlink(missing_ok=True)
        self.generation += 1
        self.metadata.generation = self.generation
        self._segments = []
        self.metadata.set_info(pending=self._pending())

    def _finish_pending(self, segments: list[SegmentInfo]) -> None:
        for info in segments:
            folder = layout.segment_dir(self.path, info.name)
            if info.rows:
                drop_build_files(folder)
            else:
                shutil.rmtree(folder, ignore_errors=True)
        self.metadata.forget_pending()

    def _vectors_of(self, ids: np.ndarray, new_segments: list[SegmentInfo],
                    new_vectors: dict[str, tuple[np.ndarray, np.ndarray]],
                    shape: RowShape) -> tuple[np.ndarray, np.ndarray]:
        """Global descriptors and labels of removed images, from the new segments (their descriptors and
        labels in `new_vectors`, by name) or the published ones."""
        vectors = np.empty((len(ids), shape.global_dim), np.float32)
        labels = np.empty(len(ids), np.int64)
        found = np.zeros(len(ids), bool)
        for info in new_segments:
            inside = (ids >= info.first_id) & (ids < info.first_id + info.rows)
            if inside.any():
                seg_vectors, seg_labels = new_vectors[info.name]
                rows = ids[inside] - info.first_id
                vectors[inside], labels[inside] = seg_vectors[rows], seg_labels[rows]
                found |= inside
        if not found.all():
            rest = ids[~found]
            rest_labels = [classes.class_index(r.label) for r in self._removed_records(rest)]
            published = self._published_index()
            vectors[~found] = published.vectors_of(rest.tolist(), rest_labels)
            labels[~found] = rest_labels
        return vectors, labels

    def _removed_records(self, ids: np.ndarray) -> list[ImageRecord]:
        previous = self.metadata.generation
        self.metadata.generation = self.manifest.generation  # removed now, visible before
        try:
            return self.metadata.get_many(ids.tolist())
        finally:
            self.metadata.generation = previous

    # -- compaction ----------------------------------------------------------------------------
    @_reports_full_disk
    def compact(self) -> PublishSummary:
        """Rewrite the published segments without their removed rows, as full-size segments, and forget
        the removed records. Readers of older generations must reopen afterwards (their segment files
        and records are gone)."""
        if self.has_pending_build:
            raise IndexStateError(f"{self.path} holds an interrupted build",
                                  "run the same `refsearch build-index` again to finish it first")
        if len(self.pending_removals()):
            self.publish()  # an interrupted removal: finish it first
        manifest = self.manifest
        tombstones = self._published_tombstones()
        if not manifest.segments:
            return PublishSummary(manifest.generation, manifest.images, 0, 0)
        shape = self._shape()
        published = self._published_index()
        all_ids, all_vectors = published.vectors()
        keep = ~np.isin(all_ids, tombstones)
        live_ids, live_vectors = all_ids[keep], all_vectors[keep]
        labels = np.array([classes.class_index(r.label) for r in self.metadata.get_many(live_ids.tolist())]
                          if len(live_ids) else [], np.int64)
        readers = [Segment(layout.segment_dir(self.path, s.name), s, shape) for s in manifest.segments]
        new_segments = []
        for start in range(0, len(live_ids), SEGMENT_ROWS):
            chunk = live_ids[start:start + SEGMENT_ROWS]
            cells, histograms = gather_rows(readers, shape, chunk)
            info = SegmentInfo(f"s{self._next_segment:06d}", int(chunk[0]), len(chunk), contiguous=False)
            self._next_segment += 1
            new_segments.append(write_merged(layout.segment_dir(self.path, info.name), info, chunk, cells,
                                             histograms, live_vectors[start:start + SEGMENT_ROWS],
                                             labels[start:start + SEGMENT_ROWS], classes.num_classes()))
        self.metadata.set_info(next_segment=self._next_segment)
        old_segments = manifest.segments
        stats = ClassStats.empty(classes.num_classes(), shape.global_dim)
        stats.add(live_vectors, labels)
        replaced = self._save_generation(new_segments, stats, {}, 0)
        self.metadata.purge(tombstones.tolist())
        for info in old_segments:
            shutil.rmtree(layout.segment_dir(self.path, info.name), ignore_errors=True)
        summary = PublishSummary(manifest.generation, manifest.images, 0, len(tombstones))
        self._forget_files(replaced)
        return summary


def _write_skipped_report(path: Path, skipped: list[SkippedFile]) -> None:
    if not skipped:
        path.unlink(missing_ok=True)
        return
    lines = ["path\treason\n", *(f"{item.path}\t{item.reason}\n" for item in sorted(skipped, key=lambda s: s.path))]
    write_file(path, "".join(lines).encode())


__all__ = ["SEGMENT_ROWS", "IndexWriter", "PublishSummary", "disk_full_reported"]
