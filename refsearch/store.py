"""Per-image metadata in LMDB: records keyed by id, the path and content maps, skipped files, pending work.

LMDB gives one writer and many readers, each reader on a consistent snapshot. Records carry the
generation that added them and the one that removed them, so a reader opened on generation G sees
exactly the records G published, whatever a writer has committed since. Descriptors are not here: they
live in fixed-width segment arrays (`segments.py`).

A record packs into about 60 bytes plus its path, stored relative to the indexed folder.

`data.mdb` changes with every write, so no generation records its checksum. What is checked instead:
opening requires it to be there and to hold every page its header names (a reader never creates it),
and reading it translates what LMDB or a record's decoding finds wrong into IndexDamagedError naming
it; `refsearch verify` also checks that its records agree with the segments and class statistics.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import struct
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import lmdb
import numpy as np

from . import classes, layout
from .errors import IndexStateError, NotFoundError
from .integrity import FileRecord, damaged, size_problem

# Address space, not disk: the file grows as records are written (about 300 bytes an image with the
# path and content maps), and the writer doubles it if it ever fills.
MAP_SIZE = 1 << 40
# Less free space than this is a full disk, for LMDB's purposes (its lock file takes 8 KB).
_LOCK_FILE_ROOM = 64 << 10
_DATABASES = ("records", "paths", "digests", "skipped", "removals", "info")
_RECORD = struct.Struct("<HBHfIIQq16sII")
_SOURCES = ("folder", "filename", "predicted")


# The reason listed for a file taken out of the index by `remove`: no build adds it back while it is unchanged.
REMOVED_FROM_INDEX = "removed from the index"


@dataclass(frozen=True)
class ImageRecord:
    id: int
    path: str
    label: str
    label_source: str  # "folder", "filename" or "predicted"
    prediction: str
    confidence: float
    width: int
    height: int
    digest: str
    file_size: int
    mtime_ns: int


@dataclass(frozen=True)
class SkippedFile:
    path: str
    reason: str
    file_size: int
    mtime_ns: int

    @property
    def removed(self) -> bool:
        """Left out because it was removed from the index (the file is fine), not because it is unreadable."""
        return self.reason == REMOVED_FROM_INDEX


@dataclass(frozen=True)
class FileState:
    id: int
    file_size: int
    mtime_ns: int


def _key(record_id: int) -> bytes:
    return struct.pack(">Q", record_id)


def _id(key: bytes) -> int:
    return struct.unpack(">Q", key)[0]


def _visible(added: int, removed: int, generation: int) -> bool:
    return added <= generation and (removed == 0 or removed > generation)


class _Undecodable(Exception):
    """A stored value that cannot be what the writer stored."""


class _Packed:
    """A record as stored, with its generations, unpacked once."""

    __slots__ = ("id", "label", "source", "prediction", "confidence", "width", "height", "file_size",
                 "mtime_ns", "digest", "added", "removed", "relative_path")

    def __init__(self, record_id: int, raw: bytes):
        try:
            (self.label, self.source, self.prediction, self.confidence, self.width, self.height, self.file_size,
             self.mtime_ns, self.digest, self.added, self.removed) = _RECORD.unpack_from(raw)
            self.relative_path = bytes(raw[_RECORD.size:]).decode()
        except (struct.error, UnicodeDecodeError) as exc:
            raise _Undecodable(f"record {record_id}: {exc}") from None
        if max(self.label, self.prediction) >= classes.num_classes() or self.source >= len(_SOURCES):
            raise _Undecodable(f"record {record_id} names no class")
        self.id = record_id

    def record(self, root: Path) -> ImageRecord:
        wnids = classes.wnids()
        return ImageRecord(id=self.id, path=str(root / self.relative_path), label=wnids[self.label],
                           label_source=_SOURCES[self.source], prediction=wnids[self.prediction],
                           confidence=round(float(self.confidence), 4), width=self.width, height=self.height,
                           digest=self.digest.hex() if any(self.digest) else "", file_size=self.file_size,
                           mtime_ns=self.mtime_ns)


def _pack(record: ImageRecord, relative_path: str, added: int, removed: int = 0) -> bytes:
    digest = bytes.fromhex(record.digest) if record.digest else bytes(16)
    return _RECORD.pack(classes.class_index(record.label), _SOURCES.index(record.label_source),
                        classes.class_index(record.prediction), record.confidence, record.width,
                        record.height, record.file_size, record.mtime_ns, digest, added,
                        removed) + relative_path.encode()


def _relative(root: Path, path: str) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path  # an absolute path outside the root stays absolute; root / it gives it back


@dataclass(frozen=True)
class RecordColumns:
    """Every visible record's facts as numpy columns (ids ascending): a million records as objects
    would take gigabytes, as columns about 60 MB."""

    ids: np.ndarray  # int64
    digests: np.ndarray  # S32 hex, b"" when unknown
    labels: np.ndarray  # int16 class index
    predictions: np.ndarray  # int16
    confidences: np.ndarray  # float32
    predicted_labels: np.ndarray  # bool: the label is the network's prediction
    pixels: np.ndarray  # int64
    file_sizes: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.ids)


# What LMDB reports of a file that is not what it wrote; its other errors (too many readers, a full
# disk, ...) are not damage.
_DAMAGE = (lmdb.InvalidError, lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.VersionMismatchError,
           lmdb.IncompatibleError, lmdb.PanicError, lmdb.BadChecksumError, lmdb.BadTxnError, lmdb.NotFoundError,
           _Undecodable)
# Opening, LMDB maps the file by the page size and last page its header names: a damaged header names an
# impossible page size (EINVAL), a last page past what can be mapped (ENOMEM), or one whose offset wraps
# around to a map too small for it (MAP_RESIZED).
_UNOPENABLE = (*_DAMAGE, lmdb.InvalidParameterError, lmdb.MemoryError, lmdb.MapResizedError)


def _check_data_file(path: Path) -> None:
    """IndexDamagedError unless the data file of the environment at `path` is there and not empty."""
    data = path / layout.DATA_MDB
    problem = size_problem(data, FileRecord())
    if problem is None and os.stat(data).st_size == 0:
        problem = "is empty"
    if problem is not None:
        raise damaged(data, problem)


def _check_extent(env: lmdb.Environment, path: Path) -> None:
    """IndexDamagedError unless the data file holds every page its header names: a page cut off would
    fault the process when read through LMDB's memory map."""
    data = path / layout.DATA_MDB
    try:
        needed = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    except _DAMAGE as exc:
        raise damaged(data, f"cannot be read ({exc})") from None
    size = os.stat(data).st_size
    if size < needed:
        raise damaged(data, f"holds {size:,} bytes where its pages need {needed:,}")


def _open_environment(path: Path, write: bool) -> lmdb.Environment:
    if write:
        # LMDB writes a new lock file through a memory map, where a full disk faults the process instead
        # of failing a write: making one needs room first.
        if not (path / layout.LOCK_MDB).exists() and shutil.disk_usage(path.parent).free < _LOCK_FILE_ROOM:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path / layout.LOCK_MDB))
        return lmdb.open(str(path), map_size=MAP_SIZE, max_dbs=len(_DATABASES), subdir=True, lock=True,
                         readahead=False)
    # A reader creates nothing here. Where both files exist and may be written, it opens the environment
    # writable, so that a writer in the same process can share it (see _Environments), and writes
    # nothing but its slot in lock.mdb's reader table: the slot keeps a writer in another process from
    # reusing the pages it reads. Elsewhere it opens it read-only, without the reader table when lock.mdb
    # is missing or cannot be written (a read-only file system, where no writer can work either).
    lock = path / layout.LOCK_MDB
    lockable = lock.is_file() and os.access(lock, os.W_OK)
    if lockable and os.access(path / layout.DATA_MDB, os.W_OK):
        with contextlib.suppress(lmdb.ReadonlyError):
            return lmdb.open(str(path), map_size=MAP_SIZE, max_dbs=len(_DATABASES), subdir=True, create=False,
                             lock=True, readahead=False)
    return lmdb.open(str(path), max_dbs=len(_DATABASES), subdir=True, create=False, readonly=True,
                     lock=lockable, readahead=False)


def _open_databases(env: lmdb.Environment, create: bool) -> dict:
    """The named databases' handles; without `create`, a missing one is damage (lmdb.NotFoundError)."""
    return {name: env.open_db(name.encode(), create=create, dupsort=name in ("paths", "digests"))
            for name in _DATABASES}


class _Environments:
    """LMDB allows one open environment per file per process: readers and the writer of one index in
    the same process share it, and it closes when the last of them does."""

    def __init__(self):
        self._open: dict[str, list] = {}
        self._lock = threading.Lock()

    def acquire(self, path: Path, write: bool, create: bool = False) -> tuple[lmdb.Environment, dict]:
        """The environment and its named databases' handles; only a writer's `create` makes a new one.
        IndexDamagedError naming data.mdb when it is missing (unless created), cut short or unreadable."""
        key = os.path.realpath(path)
        with self._lock:
            if not create:
                _check_data_file(path)
            if key in self._open:
                entry = self._open[key]
                if write and entry[0].flags()["readonly"]:
                    raise IndexStateError(f"{path} is open read-only in this process", "close it before writing")
                _check_extent(entry[0], path)
                entry[2] += 1
                return entry[0], entry[1]
            try:
                env = _open_environment(path, write)
            except _UNOPENABLE as exc:
                raise damaged(path / layout.DATA_MDB, f"cannot be opened by LMDB ({exc})") from None
            try:
                if not create:
                    _check_extent(env, path)
                databases = _open_databases(env, create)
            except _DAMAGE as exc:
                env.close()
                raise damaged(path / layout.DATA_MDB, f"cannot be read ({exc})") from None
            except BaseException:
                env.close()
                raise
            self._open[key] = [env, databases, 1]
            return env, databases

    def release(self, env: lmdb.Environment) -> None:
        with self._lock:
            for key, entry in list(self._open.items()):
                if entry[0] is env:
                    entry[2] -= 1
                    if entry[2] == 0:
                        del self._open[key]
                        env.close()
                    return


_ENVIRONMENTS = _Environments()


class MetadataReader:
    """The records that generation `generation` published, read from a snapshot of the LMDB file.
    Whatever it finds damaged raises IndexDamagedError naming data.mdb."""

    def __init__(self, path: Path, root: Path, generation: int, *, write: bool = False, create: bool = False):
        self.path = Path(path)
        self.root = Path(root)
        self.generation = generation
        if generation == 0 and not write and not (self.path / layout.DATA_MDB).exists():
            raise IndexStateError(f"{self.path.parent} is still being created: nothing is published yet",
                                  "run the build that creates it again to finish it")
        self.env, self.db = _ENVIRONMENTS.acquire(self.path, write, create)

    def close(self) -> None:
        if self.env is not None:
            _ENVIRONMENTS.release(self.env)
            self.env = None

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        try:
            yield
        except _DAMAGE as exc:
            raise damaged(self.path / layout.DATA_MDB, f"cannot be read ({exc})") from None

    def check_files(self) -> None:
        """IndexDamagedError unless the data file is still there, whole (a stat and a header read)."""
        _check_data_file(self.path)
        _check_extent(self.env, self.path)

    def _visible(self, packed: _Packed) -> bool:
        return _visible(packed.added, packed.removed, self.generation)

    def _packed(self, txn, record_id: int) -> _Packed | None:
        raw = txn.get(_key(int(record_id)), db=self.db["records"])
        if raw is None:
            return None
        packed = _Packed(int(record_id), raw)
        return packed if self._visible(packed) else None

    def get(self, record_id: int) -> ImageRecord:
        return self.get_many([record_id])[0]

    def get_many(self, ids: Iterable[int]) -> list[ImageRecord]:
        with self._reading(), self.env.begin(buffers=True) as txn:
            out = []
            for record_id in ids:
                packed = self._packed(txn, record_id)
                if packed is None:
                    raise NotFoundError(f"no image with id {record_id} in this index")
                out.append(packed.record(self.root))
        return out

    def _scan(self) -> Iterator[_Packed]:
        with self._reading(), self.env.begin(buffers=True) as txn:
            yield from self._scan_in(txn)

    def _scan_in(self, txn) -> Iterator[_Packed]:
        for key, raw in txn.cursor(db=self.db["records"]):
            packed = _Packed(_id(bytes(key)), raw)
            if self._visible(packed):
                yield packed

    def records(self) -> Iterator[ImageRecord]:
        for packed in self._scan():
            yield packed.record(self.root)

    def columns(self) -> RecordColumns:
        return self._columns(check_paths=False)[0]

    def audit(self) -> tuple[RecordColumns, list[int]]:
        """The visible records' columns, and the ids of those whose path does not map back to them (the
        map a build compares the folder with), in one pass."""
        return self._columns(check_paths=True)

    def _columns(self, check_paths: bool) -> tuple[RecordColumns, list[int]]:
        with self._reading(), self.env.begin(buffers=True) as txn:
            stored = txn.stat(self.db["records"])["entries"]  # visible or not: an upper bound
            columns = {"ids": np.empty(stored, np.int64), "digests": np.empty(stored, "S32"),
                       "labels": np.empty(stored, np.int16), "predictions": np.empty(stored, np.int16),
                       "confidences": np.empty(stored, np.float32), "predicted_labels": np.empty(stored, bool),
                       "pixels": np.empty(stored, np.int64), "file_sizes": np.empty(stored, np.int64)}
            paths = txn.cursor(db=self.db["paths"]) if check_paths else None
            unmapped = []
            count = 0
            for row, p in enumerate(self._scan_in(txn)):
                columns["ids"][row] = p.id
                columns["digests"][row] = p.digest.hex().encode() if any(p.digest) else b""
                columns["labels"][row] = p.label
                columns["predictions"][row] = p.prediction
                columns["confidences"][row] = p.confidence
                columns["predicted_labels"][row] = p.source == 2
                columns["pixels"][row] = p.width * p.height
                columns["file_sizes"][row] = p.file_size
                if paths is not None and not paths.set_key_dup(p.relative_path.encode(), _key(p.id)):
                    unmapped.append(p.id)
                count = row + 1
        return RecordColumns(**{name: column[:count] for name, column in columns.items()}), unmapped

    def _dups(self, txn, db: str, key: bytes) -> list[int]:
        cursor = txn.cursor(db=self.db[db])
        if not cursor.set_key(key):
            return []
        return [_id(bytes(value)) for value in cursor.iternext_dup()]

    def id_of_path(self, path: str) -> int | None:
        with self._reading(), self.env.begin(buffers=True) as txn:
            for record_id in self._dups(txn, "paths", _relative(self.root, path).encode()):
                if self._packed(txn, record_id) is not None:
                    return record_id
        return None

    def ids_with_digest(self, digest: str) -> list[int]:
        with self._reading(), self.env.begin(buffers=True) as txn:
            return [i for i in self._dups(txn, "digests", bytes.fromhex(digest)) if self._packed(txn, i)]

    def file_states(self) -> dict[str, FileState]:
        """Visible records by absolute path: what an incremental build compares the folder with."""
        return {str(self.root / p.relative_path): FileState(p.id, p.file_size, p.mtime_ns) for p in self._scan()}

    def skipped(self) -> list[SkippedFile]:
        with self._reading(), self.env.begin() as txn:
            return [SkippedFile(path=str(self.root / _decoded(key)), **_json(raw))
                    for key, raw in txn.cursor(db=self.db["skipped"])]

    def info(self, name: str, default=None):
        with self._reading(), self.env.begin() as txn:
            raw = txn.get(name.encode(), db=self.db["info"])
            return default if raw is None else _json(raw)


class MetadataWriter(MetadataReader):
    """Writes for `IndexWriter`: records of the generation being built, removals, skipped files and the
    pending-work state, each call one transaction. It reads as the generation being built. `create`
    makes the store of a new index; an existing index's must be there."""

    def __init__(self, path: Path, root: Path, generation: int, *, create: bool):
        super().__init__(path, root, generation, write=True, create=create)

    def _write(self, work):
        """Run `work(txn)` in one write transaction, growing the map if it is full. A full disk is an
        OSError (ENOSPC), as it is for the writer's other files."""
        while True:
            try:
                with self._reading(), self.env.begin(write=True) as txn:
                    return work(txn)
            except lmdb.MapFullError:
                self.env.set_mapsize(self.env.info()["map_size"] * 2)
            except lmdb.Error as exc:
                # LMDB reports a full disk as ENOSPC, or as EIO when a write found room for part of it
                if not isinstance(exc, lmdb.DiskError) and not (
                        os.strerror(errno.EIO) in str(exc) and shutil.disk_usage(self.path).free < _LOCK_FILE_ROOM):
                    raise
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path / layout.DATA_MDB)) from exc

    def _stored(self, txn, ids: Iterable[int]) -> Iterator[tuple[bytes, _Packed]]:
        """(key, record) of each id that has a stored record, whatever its generations."""
        for record_id in ids:
            key = _key(int(record_id))
            raw = txn.get(key, db=self.db["records"])
            if raw is not None:
                yield key, _Packed(int(record_id), raw)

    def _put_info(self, txn, name: str, value) -> None:
        txn.put(name.encode(), json.dumps(value).encode(), db=self.db["info"])

    def add(self, records: list[ImageRecord], generation: int, info: dict) -> None:
        """Store records added by `generation`, and set `info` entries, in one transaction."""

        def work(txn):
            cursor = txn.cursor(db=self.db["records"])
            last = _id(bytes(cursor.key())) if cursor.last() else -1
            for record in records:
                relative = _relative(self.root, record.path)
                key = _key(record.id)
                # New ids only grow: appending fills each page, where an ordinary insert splits it in half.
                txn.put(key, _pack(record, relative, generation), db=self.db["records"], append=record.id > last)
                last = max(last, record.id)
                txn.put(relative.encode(), key, db=self.db["paths"])
                if record.digest:
                    txn.put(bytes.fromhex(record.digest), key, db=self.db["digests"])
                txn.delete(relative.encode(), db=self.db["skipped"])
            for name, value in info.items():
                self._put_info(txn, name, value)

        self._write(work)

    def mark_removed(self, ids: Iterable[int], generation: int, keep_out: bool = False) -> list[ImageRecord]:
        """Mark visible records removed as of `generation` (kept for readers of older generations);
        returns their records. Ids the index does not show are ignored. With `keep_out`, their files are
        listed as removed from the index in the same transaction, so that no build adds them back."""

        def work(txn):
            removed = []
            for key, packed in self._stored(txn, ids):
                if packed.removed or packed.added > generation:
                    continue
                txn.put(key, _pack(packed.record(self.root), packed.relative_path, packed.added, generation),
                        db=self.db["records"])
                txn.put(key, b"", db=self.db["removals"])
                if keep_out:
                    value = {"reason": REMOVED_FROM_INDEX, "file_size": packed.file_size, "mtime_ns": packed.mtime_ns}
                    txn.put(packed.relative_path.encode(), json.dumps(value).encode(), db=self.db["skipped"])
                removed.append(packed.record(self.root))
            return removed

        return self._write(work)

    def pending_removals(self) -> np.ndarray:
        with self._reading(), self.env.begin() as txn:
            return np.array(sorted(_id(k) for k, _ in txn.cursor(db=self.db["removals"])), np.int64)

    def purge(self, ids: Iterable[int]) -> None:
        """Delete records for good (after compaction dropped their rows), with their map entries."""

        def work(txn):
            for key, packed in self._stored(txn, ids):
                txn.delete(key, db=self.db["records"])
                txn.delete(packed.relative_path.encode(), key, db=self.db["paths"])
                if any(packed.digest):
                    txn.delete(packed.digest, key, db=self.db["digests"])

        self._write(work)

    def set_info(self, **values) -> None:
        self._write(lambda txn: [self._put_info(txn, name, value) for name, value in values.items()])

    def forget_pending(self) -> None:
        """The pending work is published (or abandoned): forget it."""

        def work(txn):
            txn.drop(self.db["removals"], delete=False)
            txn.delete(b"pending", db=self.db["info"])

        self._write(work)

    def mark_skipped(self, skipped: list[SkippedFile]) -> None:
        def work(txn):
            for item in skipped:
                value = {"reason": item.reason, "file_size": item.file_size, "mtime_ns": item.mtime_ns}
                txn.put(_relative(self.root, item.path).encode(), json.dumps(value).encode(),
                        db=self.db["skipped"])

        self._write(work)

    def forget_skipped(self, paths: Iterable[str]) -> None:
        def work(txn):
            for path in paths:
                txn.delete(_relative(self.root, path).encode(), db=self.db["skipped"])

        self._write(work)


def _decoded(key: bytes) -> str:
    try:
        return bytes(key).decode()
    except UnicodeDecodeError as exc:
        raise _Undecodable(str(exc)) from None


def _json(raw: bytes):
    try:
        return json.loads(bytes(raw))
    except ValueError as exc:
        raise _Undecodable(str(exc)) from None
