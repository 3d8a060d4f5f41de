"""Per-image records in LMDB: metadata, descriptors, cell histograms, and the path and content maps.

Every write is one LMDB transaction, so a crash loses at most the batch being written and never
leaves a half-written record.
"""
from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator

import lmdb
import numpy as np

MAP_SIZE = 1 << 40  # address space only: the file grows as records are written
_SUBDATABASES = ("meta", "global", "cells", "hist", "paths", "digests", "skipped", "info")


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


@dataclass(frozen=True)
class FileState:
    id: int
    file_size: int
    mtime_ns: int


def _key(record_id: int) -> bytes:
    return struct.pack(">Q", record_id)


def _id(key: bytes) -> int:
    return struct.unpack(">Q", key)[0]


class RecordStore:
    def __init__(self, path: Path, *, write: bool = False):
        self.path = Path(path)
        if not write and not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no record store")
        try:
            self.env = lmdb.open(str(self.path), map_size=MAP_SIZE, max_dbs=len(_SUBDATABASES),
                                 readonly=not write, subdir=True, lock=True, readahead=False)
        except lmdb.ReadonlyError:
            self.env = lmdb.open(str(self.path), max_dbs=len(_SUBDATABASES), readonly=True, lock=False)
        self.db = {name: self.env.open_db(name.encode(), create=write, dupsort=(name == "digests"))
                   for name in _SUBDATABASES}

    def close(self) -> None:
        self.env.close()

    # -- writing -------------------------------------------------------------------------------
    def add(self, records: list[ImageRecord], global_vectors: np.ndarray, cells: np.ndarray,
            histograms: np.ndarray) -> None:
        with self.env.begin(write=True) as txn:
            for i, record in enumerate(records):
                key = _key(record.id)
                meta = asdict(record)
                del meta["id"]
                txn.put(key, json.dumps(meta).encode(), db=self.db["meta"])
                txn.put(key, np.ascontiguousarray(global_vectors[i], np.float32).tobytes(), db=self.db["global"])
                txn.put(key, np.ascontiguousarray(cells[i], np.float16).tobytes(), db=self.db["cells"])
                txn.put(key, np.ascontiguousarray(histograms[i], np.float32).tobytes(), db=self.db["hist"])
                txn.put(record.path.encode(), key, db=self.db["paths"])
                txn.put(record.digest.encode(), key, db=self.db["digests"])
                txn.delete(record.path.encode(), db=self.db["skipped"])

    def delete(self, ids: Iterable[int]) -> int:
        removed = 0
        with self.env.begin(write=True) as txn:
            for record_id in ids:
                key = _key(record_id)
                raw = txn.get(key, db=self.db["meta"])
                if raw is None:
                    continue
                meta = json.loads(raw)
                for name in ("meta", "global", "cells", "hist"):
                    txn.delete(key, db=self.db[name])
                if txn.get(meta["path"].encode(), db=self.db["paths"]) == key:
                    txn.delete(meta["path"].encode(), db=self.db["paths"])
                txn.delete(meta["digest"].encode(), key, db=self.db["digests"])
                removed += 1
        return removed

    def mark_skipped(self, skipped: list[SkippedFile]) -> None:
        with self.env.begin(write=True) as txn:
            for item in skipped:
                value = {"reason": item.reason, "file_size": item.file_size, "mtime_ns": item.mtime_ns}
                txn.put(item.path.encode(), json.dumps(value).encode(), db=self.db["skipped"])

    def forget_skipped(self, paths: Iterable[str]) -> None:
        with self.env.begin(write=True) as txn:
            for path in paths:
                txn.delete(path.encode(), db=self.db["skipped"])

    def reserve_ids(self, count: int) -> int:
        """The first of `count` fresh ids; ids are never reused, so a stale id never names a new image."""
        with self.env.begin(write=True) as txn:
            first = self._next_id(txn)
            txn.put(b"next_id", str(first + count).encode(), db=self.db["info"])
        return first

    def _next_id(self, txn) -> int:
        raw = txn.get(b"next_id", db=self.db["info"])
        return int(raw) if raw else 0

    # -- reading -------------------------------------------------------------------------------
    def __len__(self) -> int:
        with self.env.begin() as txn:
            return txn.stat(self.db["meta"])["entries"]

    def get(self, record_id: int) -> ImageRecord:
        with self.env.begin() as txn:
            raw = txn.get(_key(record_id), db=self.db["meta"])
        if raw is None:
            raise KeyError(f"no image with id {record_id} in this index")
        return ImageRecord(id=record_id, **json.loads(raw))

    def get_many(self, ids: Iterable[int]) -> list[ImageRecord]:
        with self.env.begin() as txn:
            out = []
            for record_id in ids:
                raw = txn.get(_key(int(record_id)), db=self.db["meta"])
                if raw is None:
                    raise KeyError(f"no image with id {record_id} in this index")
                out.append(ImageRecord(id=int(record_id), **json.loads(raw)))
        return out

    def records(self) -> Iterator[ImageRecord]:
        with self.env.begin() as txn:
            for key, raw in txn.cursor(db=self.db["meta"]):
                yield ImageRecord(id=_id(key), **json.loads(raw))

    def file_states(self) -> dict[str, FileState]:
        return {r.path: FileState(r.id, r.file_size, r.mtime_ns) for r in self.records()}

    def skipped(self) -> list[SkippedFile]:
        with self.env.begin() as txn:
            return [SkippedFile(path=key.decode(), **json.loads(raw))
                    for key, raw in txn.cursor(db=self.db["skipped"])]

    def id_of_path(self, path: str) -> int | None:
        with self.env.begin() as txn:
            key = txn.get(path.encode(), db=self.db["paths"])
        return None if key is None else _id(key)

    def ids_with_digest(self, digest: str) -> list[int]:
        with self.env.begin() as txn:
            cursor = txn.cursor(db=self.db["digests"])
            if not cursor.set_key(digest.encode()):
                return []
            return [_id(value) for value in cursor.iternext_dup()]

    def global_vectors(self, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """All ids (sorted) and their global descriptors, in one scan."""
        with self.env.begin() as txn:
            count = txn.stat(self.db["global"])["entries"]
            ids = np.empty(count, np.int64)
            vectors = np.empty((count, dim), np.float32)
            for row, (key, raw) in enumerate(txn.cursor(db=self.db["global"])):
                ids[row] = _id(key)
                vectors[row] = np.frombuffer(raw, np.float32)
        return ids, vectors

    def global_vectors_of(self, ids: list[int], dim: int) -> np.ndarray:
        with self.env.begin() as txn:
            return np.array([np.frombuffer(txn.get(_key(i), db=self.db["global"]), np.float32) for i in ids],
                            np.float32).reshape(len(ids), dim)

    def local_features(self, ids: Iterable[int], cells: int, cell_dim: int, bins: int
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Cell descriptors (n, cells, cell_dim) as float32 and histograms (n, cells, bins) for `ids`."""
        ids = list(ids)
        cell_out = np.empty((len(ids), cells, cell_dim), np.float16)
        hist_out = np.empty((len(ids), cells, bins), np.float32)
        with self.env.begin(buffers=True) as txn:
            for row, record_id in enumerate(ids):
                key = _key(int(record_id))
                cell_out[row] = np.frombuffer(txn.get(key, db=self.db["cells"]), np.float16).reshape(cells, cell_dim)
                hist_out[row] = np.frombuffer(txn.get(key, db=self.db["hist"]), np.float32).reshape(cells, bins)
        return cell_out.astype(np.float32), hist_out
