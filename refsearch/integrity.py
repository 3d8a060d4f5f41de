"""What a generation records of each file it uses (its size and CRC-32), and checking files against it.

The writer records a file as it writes it: a segment's arrays while they are appended, batch by batch
(the running CRC is committed with the rows, so a resumed build carries it on), every other file as it
is saved. A reader checks the sizes when it opens a generation (a stat a file) and the checksums of the
small files it reads whole; `refsearch verify` checks every checksum. CRC-32 finds accidental damage
(a file cut short, zeroed or with flipped bytes), not deliberate changes; zlib computes it faster than
blake2b, sha256 or md5 (`docs/scale.md`).
"""
from __future__ import annotations

import contextlib
import os
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

from . import layout
from .errors import IndexDamagedError

CHUNK_BYTES = 8 << 20
CHANGED = "has changed since it was written (its checksum differs)"
T = TypeVar("T")


@dataclass(frozen=True)
class FileRecord:
    """A file as written: its size in bytes and its CRC-32. Either is None where it was not recorded (an
    index written by format 2)."""

    size: int | None = None
    crc32: int | None = None

    @classmethod
    def of_bytes(cls, data) -> "FileRecord":
        return cls(0, 0).extended(data)

    def extended(self, data) -> "FileRecord":
        """The record of this file with `data` appended."""
        view = memoryview(data).cast("B")
        return FileRecord(self.size + view.nbytes, zlib.crc32(view, self.crc32))

    def to_dict(self) -> dict:
        out = {}
        if self.size is not None:
            out["size"] = self.size
        if self.crc32 is not None:
            out["crc32"] = f"{self.crc32:08x}"
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "FileRecord":
        crc = data.get("crc32")
        return cls(data.get("size"), None if crc is None else int(crc, 16))


def record_of_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> FileRecord:
    """The size and CRC-32 of a file as it is on disk, read in chunks (`on_bytes` is told each one's size)."""
    crc, size = 0, 0
    buffer = bytearray(CHUNK_BYTES)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while count := handle.readinto(buffer):
            crc = zlib.crc32(view[:count], crc)
            size += count
            if on_bytes is not None:
                on_bytes(count)
    return FileRecord(size, crc)


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[BinaryIO]:
    """A file to write that replaces `path` whole when the block ends (a temporary file, fsynced, then
    renamed), or not at all: removed again if the block fails, so that a full disk keeps no half-written
    copy."""
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    try:
        with open(temporary, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_file(path: Path, data) -> FileRecord:
    """Write `data` to `path` whole or not at all (`replacing`); returns its record."""
    with replacing(path) as handle:
        handle.write(data)
    return FileRecord.of_bytes(data)


def damage_hint(index: Path) -> str:
    return (f"the index is damaged: `refsearch verify --index {index}` lists its damaged files; restore them "
            f"from a backup, or rebuild it with `refsearch build-index PHOTOS -o {index} --rebuild`")


def damaged(file: Path, problem: str) -> IndexDamagedError:
    """The error for a file of an index found damaged: `problem` says how ("is missing", ...)."""
    return IndexDamagedError(f"{file} {problem}", damage_hint(layout.index_of(file)), file=Path(file),
                             problem=problem)


def size_problem(file: Path, record: FileRecord) -> str | None:
    """How the file differs from its record by what a stat shows, or None."""
    try:
        stat = os.stat(file)
    except (FileNotFoundError, NotADirectoryError):
        return "is missing"
    if not os.path.isfile(file):
        return "is not a file"
    if record.size is not None and stat.st_size != record.size:
        return f"holds {stat.st_size:,} bytes where {record.size:,} were written"
    return None


def check_size(file: Path, record: FileRecord) -> None:
    """IndexDamagedError naming the file when it is missing or not of its recorded size."""
    problem = size_problem(file, record)
    if problem:
        raise damaged(file, problem)


def read_checked(file: Path, record: FileRecord) -> bytes:
    """A file read whole, checked against its record (size, and checksum where one is recorded)."""
    check_size(file, record)
    data = Path(file).read_bytes()
    if record.crc32 is not None and (len(data) != record.size or zlib.crc32(data) != record.crc32):
        raise damaged(file, CHANGED)
    return data


def read_parsed(file: Path, record: FileRecord, parse: Callable[[bytes], T]) -> T:
    """`parse` of a file read whole and checked; IndexDamagedError naming the file when it cannot parse it."""
    data = read_checked(file, record)
    try:
        return parse(data)
    except (ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise damaged(file, f"cannot be read ({type(exc).__name__}: {exc})") from None


def content_problem(file: Path, record: FileRecord, on_bytes: Callable[[int], None] | None = None) -> str | None:
    """How the file differs from its record, reading it whole when a checksum is recorded; or None."""
    problem = size_problem(file, record)
    if problem is not None or record.crc32 is None:
        return problem
    found = record_of_file(file, on_bytes)
    if found.size != record.size:  # changed while it was read
        return f"holds {found.size:,} bytes where {record.size:,} were written"
    return CHANGED if found.crc32 != record.crc32 else None
