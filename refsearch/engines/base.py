"""What an engine does. For a build, it turns image files into their raw features (decoded, histograms
computed, the backbone run), a batch at a time, and hands the batches back to the build, which projects
and stores them. For a batch query, it answers photos with an index, a line of JSON each, and hands the
lines back to the query, which writes them. Engines differ in where that work runs: threads of this
process, or a Ray cluster."""
from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

import numpy as np

from ..config import IndexConfig, SearchSettings
from ..errors import IndexStateError
from ..features import PreparedImage, RawFeatures, load_prepared
from ..images import ImageError, ImageFile

if TYPE_CHECKING:
    from ..backbones import Backbone
    from ..search import Index, QueryFeatures


def shipped_weights(weights: str | os.PathLike | None) -> str | None:
    """Backbone weights as another process is to load them: a file by its absolute path, for workers
    whose folder is another; a weights name as it is."""
    if weights is None:
        return None
    return str(Path(weights).resolve() if Path(weights).is_file() else weights)


def _registered(name: str, factory: Callable | None) -> None:
    """Registers `factory` as backbone `name` in this process unless a backbone of that name is known."""
    from ..backbones import available_backbones, register_backbone

    if factory is not None and name not in available_backbones():
        register_backbone(name)(factory)


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
        from ..backbones import create_backbone

        _registered(self.name, self.factory)
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
class IndexRequest:
    """How to open a query's index again in another process, as this process opened it: the same
    folder, generation, weights, device and search settings; `backbone_factory` as in BackboneRequest."""

    path: str
    generation: int
    weights: str | None
    device: str
    search: SearchSettings
    backbone: str
    backbone_factory: Callable | None = None

    @classmethod
    def of(cls, index: "Index") -> "IndexRequest":
        from ..backbones import backbone_factory

        backbone = index.config.backbone
        return cls(str(index.path.resolve()), index.generation, shipped_weights(index.weights), index.device,
                   index.search_settings, backbone, backbone_factory(backbone))

    def open(self) -> "Index":
        """The index, refused when a writer has published another generation since the query opened it:
        the old one's files may be gone, and the query's lines come from the generation it opened."""
        from ..search import Index

        _registered(self.backbone, self.backbone_factory)
        index = Index.open(self.path, weights=self.weights, device=self.device, search=self.search)
        if index.generation != self.generation:
            index.close()
            raise IndexStateError(f"{self.path} was published again (generation {index.generation}) after this "
                                  f"query opened generation {self.generation}",
                                  "rerun the query when the index is no longer being written: it answers the "
                                  "photos not yet written")
        return index


@dataclass(frozen=True)
class Unreadable:
    file: ImageFile
    error: ImageError


class Engine(Protocol):
    def extract(self, files: list[ImageFile]) -> Iterator[ExtractedBatch | Unreadable]:
        """Every file once, as part of a batch or as unreadable; batches hold at most the build's batch size."""


class QueryEngine(Protocol):
    def answer(self, photos: list[Path]) -> Iterator[list[dict]]:
        """Every photo's line once (see `answer_lines`), in photo order, a batch of lines at a time."""


def prepare_safely(path: Path, config: IndexConfig, input_size: int) -> PreparedImage | ImageError:
    try:
        return load_prepared(path, config, input_size)
    except ImageError as error:
        return error
    except Exception as exc:  # a decoder bug on one file must not stop a million-image build
        return ImageError(path, f"cannot decode ({type(exc).__name__}: {exc})")


def prepared_in_order(paths: Iterable[Path], config: IndexConfig, input_size: int,
                      workers: int, lookahead: int) -> Iterator[PreparedImage | ImageError]:
    """`prepare_safely` of each path, in order, decoded by `workers` threads (none: here) keeping up to
    `lookahead` images ahead of the caller."""
    if workers == 0:
        for path in paths:
            yield prepare_safely(path, config, input_size)
        return
    with ThreadPoolExecutor(workers) as pool:
        pending: deque = deque()
        remaining = iter(paths)
        for path in remaining:
            pending.append(pool.submit(prepare_safely, path, config, input_size))
            if len(pending) >= lookahead:
                break
        while pending:
            future = pending.popleft()
            following = next(remaining, None)
            if following is not None:
                pending.append(pool.submit(prepare_safely, following, config, input_size))
            yield future.result()


@dataclass(frozen=True)
class EmbeddedBatch:
    """A batch query's photos as decoded, and the descriptors of those that could be read."""

    photos: list[Path]
    prepared: list[PreparedImage | ImageError]
    queries: list["QueryFeatures"]
    forward_ms: float  # the network and PCA, per readable photo


def embed_batch(index: "Index", photos: list[Path], prepared: list[PreparedImage | ImageError]) -> EmbeddedBatch:
    readable = [(photo, item) for photo, item in zip(photos, prepared) if not isinstance(item, ImageError)]
    started = time.perf_counter()
    queries = index.embed_prepared(*zip(*readable)) if readable else []
    forward_ms = (time.perf_counter() - started) * 1000 / max(1, len(readable))
    return EmbeddedBatch(photos, prepared, queries, forward_ms)


def answer_embedded(index: "Index", batch: EmbeddedBatch, k: int, options: dict) -> list[dict]:
    """A batch query's line for each photo: its `SearchResponse.to_dict()` from
    `index.search_features(..., k, **options)`, or {query, error, hint} where it could not be read."""
    responses = iter(index.search_features(batch.queries, k, **options))
    lines = []
    for photo, item in zip(batch.photos, batch.prepared):
        if isinstance(item, ImageError):
            lines.append({"query": str(photo), "error": item.message, "hint": item.hint})
            continue
        response = next(responses)
        response.forward_ms = round(batch.forward_ms, 2)
        lines.append(response.to_dict())
    return lines


def answer_lines(index: "Index", photos: list[Path], prepared: list[PreparedImage | ImageError], k: int,
                 options: dict) -> list[dict]:
    """`answer_embedded` of the photos as `prepared_in_order` gave them."""
    return answer_embedded(index, embed_batch(index, photos, prepared), k, options)
