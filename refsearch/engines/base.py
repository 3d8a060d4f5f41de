"""What an engine does for a build: it turns image files into their raw features (decoded, histograms
computed, the backbone run), a batch at a time, and hands the batches back to the build, which projects
and stores them. Engines differ in where that work runs: threads of this process, or a Ray cluster."""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

import numpy as np

from ..config import IndexConfig
from ..features import PreparedImage, RawFeatures, load_prepared
from ..images import ImageError, ImageFile

if TYPE_CHECKING:
    from ..backbones import Backbone


@dataclass(frozen=True)
class BackboneRequest:
    """How to load the build's backbone again in another process. `factory` is the callable registered
    under `name` in this process, shipped along so that a worker knows backbones registered only here."""

    name: str
    weights: str | None
    device: str
    input_size: int
    precision: str
    factory: Callable | None = None

    def create(self) -> "Backbone":
        from ..backbones import available_backbones, create_backbone, register_backbone

        if self.factory is not None and self.name not in available_backbones():
            register_backbone(self.name)(self.factory)
        return create_backbone(self.name, weights=self.weights, device=self.device, input_size=self.input_size,
                               precision=self.precision)


@dataclass(frozen=True)
class ExtractedBatch:
    """Decoded and forwarded images, before projection: what the PCA sample keeps on disk."""

    files: list[ImageFile]
    sizes: list[tuple[int, int]]
    digests: list[str]
    raw: RawFeatures

    def save(self, path: Path) -> None:
        temporary = path.with_name(path.name + ".tmp.npz")
        with open(temporary, "wb") as handle:
            np.savez(handle, paths=np.array([str(f.path) for f in self.files]),
                     file_sizes=np.array([f.size for f in self.files], np.int64),
                     mtimes=np.array([f.mtime_ns for f in self.files], np.int64),
                     sizes=np.array(self.sizes, np.int64).reshape(-1, 2), digests=np.array(self.digests),
                     logits=self.raw.logits, global_=self.raw.global_.astype(np.float16),
                     cells=self.raw.cells.astype(np.float16), histograms=self.raw.histograms)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)

    @staticmethod
    def paths(path: Path) -> list[str]:
        """The files a saved batch holds, without reading its features."""
        with np.load(path) as data:
            return [str(p) for p in data["paths"]]

    @classmethod
    def load(cls, path: Path) -> "ExtractedBatch":
        with np.load(path) as data:
            files = [ImageFile(Path(p), int(s), int(m)) for p, s, m in
                     zip(data["paths"], data["file_sizes"], data["mtimes"])]
            raw = RawFeatures(data["logits"], data["global_"].astype(np.float32), data["cells"].astype(np.float32),
                              data["histograms"])
            return cls(files, [tuple(s) for s in data["sizes"].tolist()], [str(d) for d in data["digests"]], raw)


@dataclass(frozen=True)
class Unreadable:
    file: ImageFile
    error: ImageError


class Engine(Protocol):
    def extract(self, files: list[ImageFile]) -> Iterator[ExtractedBatch | Unreadable]:
        """Every file once, as part of a batch or as unreadable; batches hold at most the build's batch size."""


def prepare_safely(file: ImageFile, config: IndexConfig, input_size: int) -> PreparedImage | ImageError:
    try:
        return load_prepared(file.path, config, input_size)
    except ImageError as error:
        return error
    except Exception as exc:  # a decoder bug on one file must not stop a million-image build
        return ImageError(file.path, f"cannot decode ({type(exc).__name__}: {exc})")
