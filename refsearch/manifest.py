"""The index manifest: the published generation. How the index was built, its search defaults, the
segments and files that make up what it holds, with each file's size and checksum.

A writer publishes a generation by replacing this file atomically, after every file it names is on
disk; a reader reads it once and so sees one generation whole. The list of files grows with the
segments, never with the images.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import layout
from .config import IndexConfig, SearchSettings
from .errors import IndexStateError, RefsearchError
from .index_format import FORMAT_VERSION, upgraded
from .integrity import FileRecord, check_size, damaged, read_checked, write_file
from .layout import MANIFEST
from .segments import RowShape, SegmentInfo


def software_versions() -> dict[str, str]:
    """What wrote the index: refsearch and the libraries it stores with, and those of the runtimes that
    ran the network in this process (torch, ONNX Runtime), as far as they are loaded."""
    import faiss
    import numpy

    from . import __version__

    versions = {"refsearch": __version__, "python": platform.python_version(), "faiss": faiss.__version__,
                "numpy": numpy.__version__}
    for runtime in ("torch", "onnxruntime"):
        if runtime in sys.modules:
            versions[runtime] = sys.modules[runtime].__version__
    return versions


@dataclass(frozen=True)
class GenerationFile:
    """One of a generation's own files (projections, class statistics, tombstones), by its name in the
    index folder, with its record."""

    name: str
    record: FileRecord = FileRecord()

    def to_dict(self) -> dict:
        return {"name": self.name, **self.record.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> "GenerationFile":
        return cls(data["name"], FileRecord.from_dict(data))


@dataclass
class Manifest:
    config: IndexConfig
    source: str
    search: SearchSettings = field(default_factory=SearchSettings)
    generation: int = 0
    images: int = 0
    skipped: int = 0  # files found unreadable
    removed_files: int = 0  # files removed from the index with `remove`, kept out of builds
    classes: int = 0
    dims: dict = field(default_factory=dict)  # stored descriptor sizes: global, cell; fitted_on
    segments: list[SegmentInfo] = field(default_factory=list)
    tombstones: int = 0  # removed images whose rows are still in segments
    files: dict[str, GenerationFile] = field(default_factory=dict)  # projections, class_stats, tombstones
    versions: dict = field(default_factory=software_versions)
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    format_version: int = FORMAT_VERSION

    def search_kind(self) -> str:
        return "exact" if self.images <= self.search.exact_all_class_limit else "ivf"

    def row_shape(self) -> RowShape:
        """The stored rows' shape (dimensions 1 before any image is stored)."""
        return RowShape(self.config.cells, self.dims.get("cell", 1), self.config.hist_bins, self.dims.get("global", 1))

    def file_records(self) -> dict[str, FileRecord]:
        """Every file this generation uses, by its path inside the index folder, with its record."""
        records = {file.name: file.record for file in self.files.values()}
        shape = self.row_shape()
        for segment in self.segments:
            for name, record in segment.file_records(shape).items():
                records[f"{layout.SEGMENTS}/{segment.name}/{name}"] = record
        return records

    def read_whole(self) -> list[str]:
        """The files a reader reads whole (the others it memory-maps): the generation's own and the
        compacted segments' ids."""
        return [file.name for file in self.files.values()] + [
            f"{layout.SEGMENTS}/{segment.name}/{layout.IDS}" for segment in self.segments if not segment.contiguous]

    def check_files(self, folder: Path, *, whole: bool = False) -> None:
        """IndexDamagedError naming the first file of this generation that is missing or not of its
        recorded size: a stat a file, whatever the number of images. With `whole`, the files a reader
        reads whole are read and their checksums checked too (a few megabytes at 1.28M images)."""
        records = self.file_records()
        for relative, record in records.items():
            check_size(Path(folder) / relative, record)
        if whole:
            for relative in self.read_whole():
                read_checked(Path(folder) / relative, records[relative])

    def to_dict(self) -> dict:
        return {"config": self.config.to_dict(), "search": self.search.to_dict(), "source": self.source,
                "generation": self.generation, "images": self.images, "skipped": self.skipped,
                "removed_files": self.removed_files,
                "classes": self.classes, "dims": self.dims, "segments": [s.to_dict() for s in self.segments],
                "tombstones": self.tombstones, "files": {role: file.to_dict() for role, file in self.files.items()},
                "versions": self.versions,
                "created": self.created, "updated": self.updated, "format_version": self.format_version}

    def save(self, folder: Path) -> None:
        self.updated = time.time()
        write_file(Path(folder) / MANIFEST, json.dumps(self.to_dict(), indent=2, sort_keys=True).encode())
        directory = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    @classmethod
    def load(cls, folder: Path) -> "Manifest":
        folder = Path(folder)
        path = folder / MANIFEST
        if not folder.exists():
            raise IndexStateError(f"{folder}: no such index", f"build one with `refsearch build-index DIR -o {folder}`")
        if not path.exists():
            if (folder / layout.METADATA).is_dir() or (folder / layout.SEGMENTS).is_dir():
                raise damaged(path, "is missing")
            raise IndexStateError(f"{folder} is not a refsearch index (no {MANIFEST})")
        try:
            data = json.loads(path.read_bytes())
        except ValueError as exc:  # not JSON, or not UTF-8
            raise damaged(path, f"is unreadable: {exc}") from None
        except OSError as exc:
            raise IndexStateError(f"{path} is unreadable: {exc}") from None
        try:
            data = upgraded(data, folder)
            return cls(config=IndexConfig.from_dict(data["config"]), source=data["source"],
                       search=SearchSettings.from_dict(data["search"]), generation=data["generation"],
                       images=data["images"], skipped=data["skipped"], removed_files=data["removed_files"],
                       classes=data["classes"], dims=data["dims"],
                       segments=[SegmentInfo.from_dict(s) for s in data["segments"]], tombstones=data["tombstones"],
                       files={role: GenerationFile.from_dict(f) for role, f in data["files"].items()},
                       versions=data["versions"], created=data["created"], updated=data["updated"],
                       format_version=data["format_version"])
        except RefsearchError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise damaged(path, f"is unreadable: {type(exc).__name__} {exc}") from None

    @staticmethod
    def exists(folder: Path) -> bool:
        return (Path(folder) / MANIFEST).exists()
