"""An opened index: one published generation, read and searched.

`Index` only reads. It opens the generation the manifest names when it is opened and answers from that
generation until it is closed, whatever a writer publishes meanwhile; `refreshed()` gives the index as
last published. Every change goes through `refsearch.writer.IndexWriter`. The search itself is
`refsearch.searcher`'s, the network `refsearch.network`'s, and curation `index.curation`'s.
"""
from __future__ import annotations

import functools
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import classes, layout
from .config import IndexConfig, SearchSettings
from .errors import ConfigMismatchError, IndexDamagedError, IndexStateError, NotFoundError
from .features import Descriptors, PreparedImage, describe, load_prepared
from .images import ImageError, ImageSource
from .integrity import damage_hint, read_parsed
from .manifest import Manifest
from .network import IndexNetwork
from .projection import Projections
from .request import SearchRequest, search_request
from .results import SearchResponse
from .searcher import EmbeddedBatch, QueryFeatures, check_searchable, search_embedded, search_queries
from .segments import Segment, gather_rows, histograms_from_stored
from .store import ImageRecord, MetadataReader, RecordColumns
from .vector_index import ClassStats, GlobalIndex, load_array

if TYPE_CHECKING:
    from .curation import Curator

COLORIZE_ENTRY_POINT_GROUP = "refsearch.colorize"


class Index:
    """A built index, opened for searching. Use `Index.open(path)`. Opening checks that every file of the
    generation is there at its recorded size, and the checksums of those it reads whole; a damaged file
    raises IndexDamagedError naming it. An Index never writes to the index folder."""

    def __init__(self, path: Path, manifest: Manifest, network: IndexNetwork,
                 search_settings: SearchSettings | None = None):
        self.path, self.manifest, self.network = path, manifest, network
        self.search_settings = search_settings or manifest.search
        manifest.check_files(path)
        self._metadata = MetadataReader(path / layout.METADATA, Path(manifest.source), manifest.generation)
        try:
            self._load_arrays()
        except BaseException:
            self._metadata.close()
            raise

    @functools.cached_property
    def curation(self) -> Curator:
        """Near-duplicates, outliers, clusters, subsets and export over this index (imported on first use:
        their libraries cost a query's start-up time)."""
        from .curation import Curator

        return Curator(self)

    def _load_arrays(self) -> None:
        manifest, path = self.manifest, self.path
        files = manifest.files
        projections = files.get("projections")
        self.projections = read_parsed(path / projections.name, projections.record, Projections.from_bytes) \
            if projections else None
        self._shape = manifest.row_shape()
        global_dim = self._shape.global_dim
        self._segments = [Segment(layout.segment_dir(path, s.name), s, self._shape) for s in manifest.segments]
        stats = ClassStats.load(path / files["class_stats"].name, files["class_stats"].record) \
            if "class_stats" in files else ClassStats.empty(classes.num_classes(), global_dim)
        tombstones = load_array(path / files["tombstones"].name, files["tombstones"].record, 1) \
            if "tombstones" in files else np.empty(0, np.int64)
        self.global_index = GlobalIndex([(s.faiss_path(), s.info.rows) for s in self._segments], stats, tombstones,
                                        global_dim)
        if self.global_index.ntotal != manifest.images:
            raise IndexDamagedError(f"{path} is inconsistent (the manifest lists {manifest.images} images, its "
                                    f"class statistics {self.global_index.ntotal})", damage_hint(path))

    @classmethod
    def open(cls, path: str | os.PathLike, *, backbone: str | None = None,
             weights: str | os.PathLike | None = None, device: str = "cpu", runtime: str = "auto",
             config: IndexConfig | None = None, search: SearchSettings | None = None) -> "Index":
        """Open the index's published generation. Naming a `backbone` or passing a `config` that differs
        from the one the index was built with raises ConfigMismatchError; `search` replaces the index's
        search defaults for this session; `runtime` runs the network (see `refsearch.network.runtime_for`)."""
        path = Path(path)
        manifest = Manifest.load(path)
        built = manifest.config
        if backbone is not None and backbone != built.backbone:
            raise ConfigMismatchError(f"{path} was built with backbone {built.backbone!r}, not {backbone!r}",
                                      "its descriptors cannot be compared with another network's")
        if config is not None:
            differences = built.differences(config.with_(weights=config.weights or built.weights,
                                                         input_size=config.input_size or built.input_size))
            if differences:
                raise ConfigMismatchError(f"{path} was built with another configuration: {'; '.join(differences)}")
        return cls._of_latest(path, manifest, IndexNetwork(built, weights, device, path, runtime), search)

    @classmethod
    def _of_latest(cls, path: Path, manifest: Manifest, network: IndexNetwork,
                   search: SearchSettings | None) -> "Index":
        """The Index of `manifest`'s generation; or of a newer one when a writer published it meanwhile and
        dropped the older one's files, which then look damaged."""
        while True:
            try:
                return cls(path, manifest, network, search)
            except IndexDamagedError:
                latest = Manifest.load(path)
                if latest.generation == manifest.generation:
                    raise
                manifest = latest

    def refreshed(self) -> "Index":
        """This index as last published: itself when no writer has published since it was opened (or its
        manifest cannot be read now: `check` says why), else a newly opened Index sharing its network
        (this one stays open, on its generation, until closed)."""
        try:
            latest = Manifest.load(self.path)
        except IndexStateError:
            return self
        if latest.generation == self.generation:
            return self
        return Index._of_latest(self.path, latest, self.network, self.search_settings)

    def check(self) -> None:
        """IndexDamagedError naming a file of this generation found missing or cut short since it was
        opened, or the manifest found unreadable (nothing when a newer generation has been published):
        a stat a file and the manifest read, cheap enough for every health check."""
        if Manifest.load(self.path).generation != self.generation:
            return  # superseded, and its files may be gone: `refreshed()` moves on
        self.manifest.check_files(self.path)
        self._metadata.check_files()

    def close(self) -> None:
        self._metadata.close()

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return self.manifest.images

    def __repr__(self) -> str:
        return (f"Index({str(self.path)!r}, images={len(self)}, generation={self.generation}, "
                f"backbone={self.config.backbone!r})")

    @property
    def config(self) -> IndexConfig:
        return self.manifest.config

    @property
    def generation(self) -> int:
        return self.manifest.generation

    @property
    def source_root(self) -> str:
        return self.manifest.source

    # -- records -------------------------------------------------------------------------------
    def record(self, record_id: int) -> ImageRecord:
        return self._metadata.get(int(record_id))

    def records_of(self, ids: Iterable[int]) -> list[ImageRecord]:
        """The records of these ids, in order; NotFoundError for an id this generation does not hold."""
        return self._metadata.get_many(ids)

    def record_of_path(self, path: str | os.PathLike) -> ImageRecord:
        """The record of an indexed file, by its path (relative paths are taken from the current folder)."""
        record_id = self._metadata.id_of_path(str(Path(path).resolve()))
        if record_id is None:
            raise NotFoundError(f"{path} is not in this index")
        return self._metadata.get(record_id)

    def records(self) -> Iterator[ImageRecord]:
        return self._metadata.records()

    def record_columns(self) -> RecordColumns:
        return self._metadata.columns()

    def ids_with_digest(self, digest: str) -> list[int]:
        return self._metadata.ids_with_digest(digest)

    # -- stored descriptors --------------------------------------------------------------------
    def local_features(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Cell descriptors (n, cells, cell_dim) and histograms (n, cells, bins), float32, for `ids`."""
        cells, stored = gather_rows(self._segments, self._shape, ids)
        return cells.astype(np.float32), histograms_from_stored(stored)

    def global_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """Every image's (id, global descriptor), ids ascending."""
        return self.global_index.vectors()

    def global_vectors_of(self, ids: Sequence[int]) -> np.ndarray:
        labels = [classes.class_index(r.label) for r in self.records_of(ids)]
        return self.global_index.vectors_of(list(ids), labels)

    def class_sizes(self) -> np.ndarray:
        return self.global_index.class_sizes()

    def search_global(self, vectors: np.ndarray, k: int, classes_to_search: list[int] | None = None, *,
                      approximate: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, ids) of the k nearest images by global cosine; all classes unless named. An
        all-class search is exact up to `exact_all_class_limit` images, else (or with `approximate`)
        it scans the `all_class_probes` classes whose mean is nearest."""
        if approximate is None:
            approximate = len(self) > self.search_settings.exact_all_class_limit
        probes = self.search_settings.all_class_probes if classes_to_search is None and approximate else None
        return self.global_index.search(vectors, k, classes_to_search, probes)

    # -- search --------------------------------------------------------------------------------
    def embed(self, images: Sequence[ImageSource]) -> list[QueryFeatures]:
        """Descriptors of query images (paths, PIL images or arrays), computed as the index's were."""
        return self.embed_prepared(images, [self.prepare(image) for image in images])

    def prepare(self, image: ImageSource) -> PreparedImage:
        """An image decoded for this index's network and histograms; ImageError when it cannot be."""
        return load_prepared(image, self.config, self.network.input_size)

    def embed_prepared(self, images: Sequence[ImageSource], prepared: Sequence[PreparedImage]) -> list[QueryFeatures]:
        """`embed` for images already decoded by `prepare`; `images` name them."""
        if self.projections is None:
            raise IndexStateError(f"{self.path} is empty", "index some images first")
        descriptors = describe(self.network.raw_features(prepared), self.projections)
        return [QueryFeatures(_describe_source(image), _row(descriptors, i), p.digest)
                for i, (image, p) in enumerate(zip(images, prepared))]

    def embed_batch(self, sources: Sequence[ImageSource], prepared: Sequence[PreparedImage | ImageError]) -> EmbeddedBatch:
        """The readable photos of a batch described; how long the network and PCA took each."""
        readable = [(source, item) for source, item in zip(sources, prepared) if not isinstance(item, ImageError)]
        self.network.load()  # before the clock starts
        started = time.perf_counter()
        queries = self.embed_prepared(*zip(*readable)) if readable else []
        forward_ms = (time.perf_counter() - started) * 1000 / max(1, len(readable))
        runtime = f"{self.network.runtime} {self.network.runtime_version}"
        return EmbeddedBatch(list(sources), list(prepared), queries, forward_ms, runtime)

    def search(self, image: ImageSource, k: int = 10, *, request: SearchRequest | None = None,
               **options) -> SearchResponse:
        """The k best references for `image`, as `request` asks (or a SearchRequest of `k` and the options)."""
        return self.search_batch([image], k, request=request, **options)[0]

    def search_batch(self, images: Sequence[ImageSource], k: int = 10, *, request: SearchRequest | None = None,
                     **options) -> list[SearchResponse]:
        """Search each image as `request` asks (or a `SearchRequest` of `k` and the options); an image
        that cannot be read raises its ImageError."""
        request = search_request(request, k, **options)
        check_searchable(self)
        return search_embedded(self, self.embed_batch(images, [self.prepare(image) for image in images]), request)

    def search_features(self, queries: Sequence[QueryFeatures], request: SearchRequest) -> list[SearchResponse]:
        """The responses to `request` of queries already described (by `embed`, or computed elsewhere)."""
        return search_queries(self, queries, request)

    def colorize(self, image: ImageSource, topk: int = 3, method: str | None = None, **options):
        """Colorize `image` from its `topk` references in this index with `method` (default: colorize's
        default method), through the colorizer the `refsearch.colorize` entry point names (the colorize
        package registers one). `options`: see `colorize.colorize_with_index` (`saturation`, `hints`: colour
        points, and search options)."""
        engines = {entry.name: entry for entry in entry_points(group=COLORIZE_ENTRY_POINT_GROUP)}
        if not engines:
            raise IndexStateError("no colorizer is installed", "install refsearch with its colorize package")
        return engines.get("default", next(iter(engines.values()))).load()(self, image, topk, method, **options)


def _row(descriptors: Descriptors, row: int) -> Descriptors:
    return Descriptors(descriptors.probabilities[row:row + 1], descriptors.global_[row:row + 1],
                       descriptors.cells[row:row + 1], descriptors.histograms[row:row + 1])


def _describe_source(image: ImageSource) -> str:
    if isinstance(image, (str, os.PathLike)):
        return str(image)
    return f"<{type(image).__name__}>"
