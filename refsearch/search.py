"""An opened index: the two-stage search (class-restricted global ranking, then the local re-rank).

`Index` only reads. It opens the generation the manifest names when it is opened and answers from that
generation until it is closed, whatever a writer publishes meanwhile; `refreshed()` gives the index as
last published. Every change goes through `refsearch.writer.IndexWriter`.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import classes, layout
from .config import IndexConfig, SearchSettings
from .curation import Curator
from .errors import ConfigMismatchError, IndexStateError, InvalidArgumentError, NotFoundError
from .features import Descriptors, PreparedImage, describe, extract, load_prepared
from .images import ImageSource
from .manifest import Manifest
from .projection import Projections
from .rerank import local_scores
from .results import ClassGuess, SearchResponse, SearchResult
from .segments import RowShape, Segment, histograms_from_stored
from .store import ImageRecord, MetadataReader, RecordColumns
from .vector_index import ClassStats, GlobalIndex

if TYPE_CHECKING:
    from .backbones import Backbone

COLORIZE_ENTRY_POINT_GROUP = "refsearch.colorize"


@dataclass(frozen=True)
class QueryFeatures:
    """A query image's descriptors, in the index's stored form, and its file digest when it has one."""

    source: str
    descriptors: Descriptors
    digest: str | None


class Index:
    """A built index, opened for searching. Use `Index.open(path)`."""

    def __init__(self, path: Path, manifest: Manifest, weights: str | os.PathLike | None, device: str,
                 search_settings: SearchSettings | None = None):
        self.path = path
        self.manifest = manifest
        self.search_settings = search_settings or manifest.search
        self._weights = weights
        self._device = device
        self._backbone: Backbone | None = None
        self._metadata = MetadataReader(path / layout.METADATA, Path(manifest.source), manifest.generation)
        try:
            self._load_arrays()
        except BaseException:
            self._metadata.close()
            raise
        self.curation = Curator(self)

    def _load_arrays(self) -> None:
        manifest, path = self.manifest, self.path
        projections_path = path / layout.PROJECTIONS
        self.projections = Projections.load(projections_path) if projections_path.exists() else None
        dims = manifest.dims
        global_dim = dims.get("global", 1)
        self._shape = RowShape(self.config.cells, dims.get("cell", 1), self.config.hist_bins, global_dim)
        self._segments = [Segment(layout.segment_dir(path, s.name), s, self._shape) for s in manifest.segments]
        self._first_ids = np.array([s.info.first_id for s in self._segments], np.int64)
        stats_name, tomb_name = manifest.files.get("class_stats"), manifest.files.get("tombstones")
        stats = ClassStats.load(path / stats_name) if stats_name else ClassStats.empty(classes.num_classes(), global_dim)
        tombstones = np.load(path / tomb_name) if tomb_name else np.empty(0, np.int64)
        self.global_index = GlobalIndex([s.faiss_path() for s in self._segments], stats, tombstones, global_dim)
        if self.global_index.ntotal != manifest.images:
            raise IndexStateError(f"{path} is inconsistent (the manifest lists {manifest.images} images, its "
                                  f"class statistics {self.global_index.ntotal})", "rebuild it with --rebuild")

    @classmethod
    def open(cls, path: str | os.PathLike, *, backbone: str | None = None,
             weights: str | os.PathLike | None = None, device: str = "cpu",
             config: IndexConfig | None = None, search: SearchSettings | None = None) -> "Index":
        """Open the index's published generation. Naming a `backbone` or passing a `config` that differs
        from the one the index was built with raises ConfigMismatchError; `search` replaces the index's
        search defaults for this session."""
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
        return cls(path, manifest, weights, device, search)

    def refreshed(self) -> "Index":
        """This index as last published: itself when no writer has published since it was opened, else
        a newly opened Index (this one stays open, on its generation, until closed)."""
        try:
            latest = Manifest.load(self.path)
        except IndexStateError:
            return self
        if latest.generation == self.generation:
            return self
        index = Index(self.path, latest, self._weights, self._device, self.search_settings)
        index._backbone = self._backbone
        return index

    # -- lifecycle -----------------------------------------------------------------------------
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

    @property
    def weights(self) -> str | os.PathLike | None:
        """The backbone weights this index was opened with (None: the backbone's default)."""
        return self._weights

    @property
    def device(self) -> str:
        return self._device

    @property
    def backbone(self) -> Backbone:
        """The backbone that built the index, loaded on first use and checked against its weights."""
        if self._backbone is None:
            # Imported here: an index opened only to read records or search described queries needs
            # no network, and torch alone takes about half a gigabyte.
            from .backbones import create_backbone

            backbone = create_backbone(self.config.backbone, weights=self._weights, device=self._device,
                                       input_size=self.config.input_size)
            if self._weights is None and self.config.weights and backbone.fingerprint != self.config.weights:
                # built with another of the backbone's named weights than today's default (e.g. before it changed)
                for name in backbone.named_weights:
                    other = create_backbone(self.config.backbone, weights=name, device=self._device,
                                            input_size=self.config.input_size)
                    if other.fingerprint == self.config.weights:
                        backbone = other
                        break
            if self.config.weights and backbone.fingerprint != self.config.weights:
                raise ConfigMismatchError(
                    f"{self.path} was built with other {self.config.backbone} weights (fingerprint "
                    f"{self.config.weights}, these are {backbone.fingerprint})", "pass the same --weights")
            self._backbone = backbone
        return self._backbone

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
        ids = np.asarray(ids, np.int64)
        shape = self._shape
        cells = np.empty((len(ids), shape.cells, shape.cell_dim), np.float16)
        stored = np.empty((len(ids), shape.cells, shape.bins), np.uint16)
        owner = np.searchsorted(self._first_ids, ids, side="right") - 1
        for number in np.unique(owner):
            inside = owner == number
            segment = self._segments[number]
            rows = segment.rows_of(ids[inside])
            order = np.argsort(rows)  # memory-mapped reads in file order
            cells[np.flatnonzero(inside)[order]] = segment.cells[rows[order]]
            stored[np.flatnonzero(inside)[order]] = segment.histograms[rows[order]]
        return cells.astype(np.float32), histograms_from_stored(stored)

    def global_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """Every image's (id, global descriptor), ids ascending."""
        return self.global_index.vectors()

    def global_vectors_of(self, ids: Sequence[int]) -> np.ndarray:
        labels = [classes.class_index(r.label) for r in self.records_of(ids)]
        return self.global_index.vectors_of(list(ids), labels)

    def search_global(self, vectors: np.ndarray, k: int, classes_to_search: list[int] | None = None, *,
                      approximate: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, ids) of the k nearest images by global cosine; all classes unless named. An
        all-class search is exact up to `exact_all_class_limit` images, else (or with `approximate`)
        it scans the `all_class_probes` classes whose mean is nearest."""
        probes = None
        if approximate is None:
            approximate = len(self) > self.search_settings.exact_all_class_limit
        if classes_to_search is None and approximate:
            probes = self.search_settings.all_class_probes
        return self.global_index.search(vectors, k, classes_to_search, probes)

    # -- search --------------------------------------------------------------------------------
    def embed(self, images: Sequence[ImageSource]) -> list[QueryFeatures]:
        """Descriptors of query images (paths, PIL images or arrays), computed as the index's were."""
        return self.embed_prepared(images, [load_prepared(image, self.config, self.backbone.input_size)
                                            for image in images])

    def embed_prepared(self, images: Sequence[ImageSource], prepared: Sequence[PreparedImage]) -> list[QueryFeatures]:
        """`embed` for images already decoded by `features.load_prepared` at this index's configuration and
        its backbone's input size; `images` name them."""
        if self.projections is None:
            raise IndexStateError(f"{self.path} is empty", "index some images first")
        descriptors = describe(extract(self.backbone, list(prepared)), self.projections)
        return [QueryFeatures(_describe_source(image), _row(descriptors, i), p.digest)
                for i, (image, p) in enumerate(zip(images, prepared))]

    def search(self, image: ImageSource, k: int = 10, **options) -> SearchResponse:
        """The k best references for `image`: see `search_batch` for the options."""
        return self.search_batch([image], k, **options)[0]

    def search_batch(self, images: Sequence[ImageSource], k: int = 10, **options) -> list[SearchResponse]:
        """Search each image: restrict to its predicted class (or `class_wnid`, or none with `any_class`),
        widening to the next most probable classes and then to all when too few images are there; take
        the `global_candidates` best by global cosine; re-rank them by d_sem + luminance_weight * d_lum
        (or keep the global order with `rerank=False`). A query file that is itself in the index comes
        back first unless `exclude_self`. A search restricted to predicted classes also keeps the images
        among the `rescue_candidates` best of all classes that are closer than any image of those classes."""
        self._check_request(k, options.get("global_candidates"))
        input_size = self.backbone.input_size  # loaded (with torch) before the clock starts
        prepared = [load_prepared(image, self.config, input_size) for image in images]
        started = time.perf_counter()
        queries = self.embed_prepared(images, prepared)
        forward_ms = (time.perf_counter() - started) * 1000 / len(images)
        responses = self.search_features(queries, k, **options)
        for response in responses:
            response.forward_ms = round(forward_ms, 2)
        return responses

    def _check_request(self, k: int, global_candidates: int | None) -> None:
        if k < 1:
            raise InvalidArgumentError(f"k must be at least 1, got {k}")
        if len(self) == 0:
            raise IndexStateError(f"{self.path} holds no images", "index some images first")
        if global_candidates is not None and global_candidates < k:
            raise InvalidArgumentError(f"global candidates ({global_candidates}) must be at least k ({k})",
                                       "the re-rank orders the candidates, so it cannot return more than them")

    def search_features(self, queries: Sequence[QueryFeatures], k: int = 10, *, class_wnid: str | None = None,
                        any_class: bool = False, exclude_self: bool = False, global_candidates: int | None = None,
                        luminance_weight: float | None = None, rescue_candidates: int | None = None,
                        class_choice: str | None = None, rerank: bool = True) -> list[SearchResponse]:
        """`search_batch` for queries already described (by `embed`, or computed elsewhere)."""
        self._check_request(k, global_candidates)
        if class_wnid is not None:
            classes.class_index(class_wnid)
        settings = self.search_settings.with_(global_candidates=global_candidates, luminance_weight=luminance_weight,
                                              rescue_candidates=rescue_candidates, class_choice=class_choice)
        candidates = max(k, settings.global_candidates)
        weight, rescue = settings.luminance_weight, settings.rescue_candidates
        params = {"k": k, "global_candidates": candidates, "luminance_weight": weight, "rerank": rerank,
                  "rescue_candidates": rescue, "class_choice": settings.class_choice,
                  "class": class_wnid, "any_class": any_class, "exclude_self": exclude_self}
        responses = []
        for query in queries:
            started = time.perf_counter()
            response = self._search_one(query, k, class_wnid, any_class, exclude_self, candidates, weight, rescue,
                                        settings.class_choice, rerank)
            response.search_ms = round((time.perf_counter() - started) * 1000, 2)
            response.params = params
            responses.append(response)
        return responses

    def colorize(self, image: ImageSource, topk: int = 3, method: str | None = None, **options):
        """Colorize `image` from its `topk` references in this index with `method` (default: colorize's
        default method). `options` are `saturation` and `hints` (colour points; see `colorize.colorize`)
        and search options (see `search_batch`)."""
        return _colorize_engine()(self, image, topk, method, **options)

    def _search_one(self, query: QueryFeatures, k: int, class_wnid: str | None, any_class: bool,
                    exclude_self: bool, candidates: int, weight: float, rescue: int, class_choice: str,
                    rerank: bool) -> SearchResponse:
        descriptors = query.descriptors
        probabilities = descriptors.probabilities[0]
        wnids = classes.wnids()
        top = np.argsort(-probabilities)
        predicted = [ClassGuess(wnids[c], classes.class_name(wnids[c]), round(float(probabilities[c]), 4))
                     for c in top[:5]]
        notes: list[str] = []
        self_ids = set(self.ids_with_digest(query.digest)) if query.digest else set()
        if exclude_self and len(self) <= len(self_ids):
            raise IndexStateError("the index holds no image other than the query itself")
        # What is searched depends on the query and the settings, never on k: `-k 3` is the first three of `-k 5`.
        wanted = self.search_settings.min_class_images + (len(self_ids) if exclude_self else 0)
        chosen = None if any_class else self._choose_classes(probabilities, top, class_wnid, wanted, class_choice,
                                                             notes)
        excluded = self_ids if exclude_self else set()
        found = self._candidates(descriptors.global_[0], candidates, chosen, excluded)
        if chosen is not None and class_wnid is None and rescue > 0:
            found.extend(self._rescued(descriptors.global_[0], rescue, found, excluded, notes))
        if not exclude_self:
            missing = sorted(self_ids - {i for _, i in found})
            vectors = self.global_vectors_of(missing) if missing else []
            found.extend((float(v @ descriptors.global_[0]), i) for v, i in zip(vectors, missing))
        found.sort(key=lambda pair: -pair[0])
        found = [f for f in found if f[1] in self_ids] + [f for f in found if f[1] not in self_ids][:candidates]
        results = self._rank(found, descriptors, k, weight, rerank)
        if len(results) < k and chosen is not None:
            # The searched classes ran out: the rest come from all classes, ranked after them.
            more = self._candidates(descriptors.global_[0], candidates, None, excluded | {i for _, i in found})
            extra = self._rank(more, descriptors, k - len(results), weight, rerank, first_rank=len(results) + 1)
            if extra:
                notes.append(f"the searched classes hold {_count(len(results), 'image')} to rank; ranks "
                             f"{len(results) + 1} to {len(results) + len(extra)} come from all classes")
            results += extra
        if k > len(results):
            notes.append(f"only {len(results)} images to rank (k={k})")
        searched_classes = None if chosen is None else [wnids[c] for c in chosen]
        return SearchResponse(query.source, results, predicted, searched_classes, notes)

    def _candidates(self, query_global: np.ndarray, candidates: int, chosen: list[int] | None,
                    excluded: set[int]) -> list[tuple[float, int]]:
        """(global similarity, id) of the `candidates` best in the chosen classes (all: None), less `excluded`."""
        searched = min(candidates + len(excluded), len(self))
        similarities, ids = self.search_global(query_global[None], searched, chosen)
        return [(float(s), int(i)) for s, i in zip(similarities[0], ids[0]) if i >= 0 and i not in excluded]

    def _rescued(self, query_global: np.ndarray, rescue: int, found: list[tuple[float, int]],
                 excluded: set[int], notes: list[str]) -> list[tuple[float, int]]:
        best_in_class = found[0][0] if found else -np.inf
        # Only images closer than the best of the searched classes are kept: near copies, which sit by
        # their own class's mean, so probing the nearest classes finds them.
        similarities, ids = self.search_global(query_global[None], rescue, approximate=True)
        known = {i for _, i in found} | excluded
        rescued = [(float(s), int(i)) for s, i in zip(similarities[0], ids[0])
                   if i >= 0 and s > best_in_class and i not in known]
        if rescued:
            notes.append(f"also ranked {_count(len(rescued), 'image')} from other classes, closer to the query "
                         "than any image of the searched classes")
        return rescued

    def _choose_classes(self, probabilities: np.ndarray, ranked_classes: np.ndarray, class_wnid: str | None,
                        wanted: int, class_choice: str, notes: list[str]) -> list[int] | None:
        """The predicted (or named) class, widened while the chosen classes hold fewer than `wanted` images;
        None (every class) when none of the classes tried holds any."""
        sizes = self.global_index.class_sizes()
        first = classes.class_index(class_wnid) if class_wnid else int(ranked_classes[0])
        chosen, total = [first], int(sizes[first])
        if total < wanted:
            if class_choice == "taxonomy":
                from .taxonomy import expected_similarity, wu_palmer_matrix

                sharpness = self.search_settings.taxonomy_sharpness
                nearness = (wu_palmer_matrix()[first] if class_wnid
                            else expected_similarity(probabilities, sharpness))
                # ties (classes equally near in meaning) go to the more probable
                order = np.lexsort((-probabilities, -nearness))
            else:
                order = ranked_classes
            for candidate in order:
                if total >= wanted or len(chosen) >= self.search_settings.widen_classes:
                    break
                candidate = int(candidate)
                if candidate != first and sizes[candidate] > 0:
                    chosen.append(candidate)
                    total += int(sizes[candidate])
        if len(chosen) == 1 and total > 0:
            return chosen
        wnid = classes.wnids()[first]
        held = f"class {wnid} ({classes.class_name(wnid)}) holds {_count(int(sizes[first]), 'image')}"
        if total == 0:  # only when widening is off (widen_classes 1)
            notes.append(f"{held}: searched all classes")
            return None
        which = "the nearest in meaning" if class_choice == "taxonomy" else "the next most probable"
        notes.append(f"{held}, fewer than {wanted}: widened to {_count(len(chosen) - 1, 'more class')} ({which})")
        return chosen

    def _rank(self, found: list[tuple[float, int]], descriptors: Descriptors, k: int, weight: float,
              rerank: bool, first_rank: int = 1) -> list[SearchResult]:
        if not found:
            return []
        global_sims = np.array([s for s, _ in found], np.float32)
        ids = [i for _, i in found]
        cells, histograms = self.local_features(ids)
        local = local_scores(descriptors.cells[0], descriptors.histograms[0], cells, histograms)
        scores = local.combined(weight)
        order = np.lexsort((-global_sims, scores)) if rerank else np.argsort(-global_sims, kind="stable")
        order = order[:k]
        records = self.records_of([ids[j] for j in order])
        return [SearchResult(rank=rank, id=record.id, path=record.path, label=record.label,
                             label_name=classes.class_name(record.label), score=round(float(scores[j]), 5),
                             semantic=round(float(local.semantic[j]), 5),
                             luminance=round(float(local.luminance[j]), 5),
                             global_similarity=round(float(global_sims[j]), 5))
                for rank, (j, record) in enumerate(zip(order, records), start=first_rank)]


    # -- curation: the calls of `refsearch.curation.Curator`, on the index --------------------
    def exact_duplicates(self):
        """See `Curator.exact_duplicates`."""
        return self.curation.exact_duplicates()

    def near_duplicates(self, *args, **kwargs):
        """See `Curator.near_duplicates`."""
        return self.curation.near_duplicates(*args, **kwargs)

    def outliers(self, *args, **kwargs):
        """See `Curator.outliers`."""
        return self.curation.outliers(*args, **kwargs)

    def label_issues(self, **kwargs):
        """See `Curator.label_issues`."""
        return self.curation.label_issues(**kwargs)

    def clusters(self, *args, **kwargs):
        """See `Curator.clusters`."""
        return self.curation.clusters(*args, **kwargs)

    def similar(self, *args, **kwargs):
        """See `Curator.similar`."""
        return self.curation.similar(*args, **kwargs)

    def subset(self, *args, **kwargs):
        """See `Curator.subset`."""
        return self.curation.subset(*args, **kwargs)

    def export(self, *args, **kwargs):
        """See `Curator.export`."""
        return self.curation.export(*args, **kwargs)

    def remove(self, ids: Iterable[int], *, wait: bool = False) -> int:
        """Remove images by id through the index's writer (their files stay on disk, and a later
        incremental build does not add them back unless they change), then move this object to the
        generation that publishes it. Returns how many were removed."""
        from .build import remove_images

        removed = remove_images(self.path, list(ids), wait=wait)
        latest = self.refreshed()
        if latest is not self:
            self._metadata.close()
            self.__dict__.update(latest.__dict__)
            self.curation = Curator(self)
        return removed


def _colorize_engine():
    """The colorizer registered for `Index.colorize` (the colorize package registers one): refsearch
    never imports colorize, which builds on refsearch."""
    engines = {entry.name: entry for entry in entry_points(group=COLORIZE_ENTRY_POINT_GROUP)}
    if not engines:
        raise IndexStateError("no colorizer is installed", "install refsearch with its colorize package")
    return engines.get("default", next(iter(engines.values()))).load()


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}es" if noun.endswith("class") else f"{n} {noun}s"


def _row(descriptors: Descriptors, row: int) -> Descriptors:
    return Descriptors(descriptors.probabilities[row:row + 1], descriptors.global_[row:row + 1],
                       descriptors.cells[row:row + 1], descriptors.histograms[row:row + 1])


def _describe_source(image: ImageSource) -> str:
    if isinstance(image, (str, os.PathLike)):
        return str(image)
    return f"<{type(image).__name__}>"
