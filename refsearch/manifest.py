"""The index manifest: the published generation. How the index was built, its search defaults, the
segments and files that make up what it holds.

A writer publishes a generation by replacing this file atomically, after every file it names is on
disk; a reader reads it once and so sees one generation whole.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import IndexConfig, SearchSettings
from .errors import IndexStateError
from .index_format import FORMAT_VERSION, upgraded
from .layout import MANIFEST
from .segments import SegmentInfo


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
    files: dict = field(default_factory=dict)  # class_stats, tombstones: this generation's file names
    versions: dict = field(default_factory=software_versions)
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    format_version: int = FORMAT_VERSION

    def search_kind(self) -> str:
        return "exact" if self.images <= self.search.exact_all_class_limit else "ivf"

    def to_dict(self) -> dict:
        return {"config": self.config.to_dict(), "search": self.search.to_dict(), "source": self.source,
                "generation": self.generation, "images": self.images, "skipped": self.skipped,
                "removed_files": self.removed_files,
                "classes": self.classes, "dims": self.dims, "segments": [s.to_dict() for s in self.segments],
                "tombstones": self.tombstones, "files": self.files, "versions": self.versions,
                "created": self.created, "updated": self.updated, "format_version": self.format_version}

    def save(self, folder: Path) -> None:
        self.updated = time.time()
        path = Path(folder) / MANIFEST
        temporary = path.with_name(path.name + ".tmp")
        with open(temporary, "w") as handle:
            json.dump(self.to_dict(), handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
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
            raise IndexStateError(f"{folder} is not a refsearch index (no {MANIFEST})")
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise IndexStateError(f"{path} is unreadable: {exc}") from None
        data = upgraded(data, folder)
        return cls(config=IndexConfig.from_dict(data["config"]), source=data["source"],
                   search=SearchSettings.from_dict(data["search"]), generation=data["generation"],
                   images=data["images"], skipped=data["skipped"], removed_files=data["removed_files"], classes=data["classes"], dims=data["dims"],
                   segments=[SegmentInfo.from_dict(s) for s in data["segments"]], tombstones=data["tombstones"],
                   files=data["files"], versions=data["versions"], created=data["created"],
                   updated=data["updated"], format_version=data["format_version"])

    @staticmethod
    def exists(folder: Path) -> bool:
        return (Path(folder) / MANIFEST).exists()
