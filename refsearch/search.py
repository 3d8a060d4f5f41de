"""An opened index: the two-stage search (class-restricted global ranking, then the local re-rank)."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from . import classes
from .backbones import Backbone, create_backbone
from .build import PROJECTIONS_NAME, RECORDS_NAME
from .config import ConfigMismatchError, IndexConfig
from .curation import CurationMixin
from .features import Descriptors, describe, extract, load_prepared
from .images import ImageSource
from .manifest import IndexStateError, Manifest
from .projection import Projections
from .rerank import local_scores
from .results import ClassGuess, SearchResponse, SearchResult
from .store import ImageRecord, RecordStore
from .vector_index import GlobalIndex


@dataclass(frozen=True)
class QueryFeatures:
    """A query image's descriptors, in the index's stored form, and its file digest when it has one."""

    source: str
    descriptors: Descriptors
    digest: str | None


class Index(CurationMixin):
    """A built index, opened for searching. Use `Index.open(path)`."""

    def __init__(self, path: Path, manifest: Manifest, store: RecordStore, global_index: GlobalIndex,
                 projections: Projections | None, weights: str | os.PathLike | None, device: str):
        self.path = path
        self.manifest = manifest
        self.store = store
        self.global_index = global_index
        self.projections = projections
        self._weights = weights
        self._device = device
        self._backbone: Backbone | None = None

    @classmethod
    def open(cls, path: str | os.PathLike, *, backbone: str | None = None,
             weights: str | os.PathLike | None = None, device: str = "cpu",
             config: IndexConfig | None = None) -> "Index":
        """Open a complete index. Naming a `backbone` or passing a `config` that differs from the one the
        index was built with raises ConfigMismatchError."""
        path = Path(path)
        manifest = Manifest.load(path)
        if manifest.state != "complete":
            raise IndexStateError(f"{path} holds an unfinished build (interrupted?); run the same "
                                  f"`refsearch build-index` again to finish it")
        built = manifest.config
        if backbone is not None and backbone != built.backbone:
            raise ConfigMismatchError(f"{path} was built with backbone {built.backbone!r}, not {backbone!r}; "
                                      "its descriptors cannot be compared with another network's")
        if config is not None:
            differences = built.build_differences(config.with_(weights=config.weights or built.weights))
            if differences:
                raise ConfigMismatchError(f"{path} was built with another configuration: {'; '.join(differences)}")
        store = RecordStore(path / RECORDS_NAME)
        global_index = GlobalIndex.load(path, manifest.files, built.ivf_nprobe)
        stored = len(store)
        if global_index.ntotal != manifest.images or stored != manifest.images:
            store.close()
            raise IndexStateError(f"{path} is inconsistent (manifest lists {manifest.images} images, the "
                                  f"stores hold {global_index.ntotal} and {stored}); rebuild it")
        projections_path = path / PROJECTIONS_NAME
        projections = Projections.load(projections_path) if projections_path.exists() else None
        return cls(path, manifest, store, global_index, projections, weights, device)

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return self.manifest.images

    def __repr__(self) -> str:
        return f"Index({str(self.path)!r}, images={len(self)}, backbone={self.config.backbone!r})"

    @property
    def config(self) -> IndexConfig:
        return self.manifest.config

    @property
    def backbone(self) -> Backbone:
        """The backbone that built the index, loaded on first use and checked against its weights."""
        if self._backbone is None:
            backbone = create_backbone(self.config.backbone, weights=self._weights, device=self._device)
            if self.config.weights and backbone.fingerprint != self.config.weights:
                raise ConfigMismatchError(
                    f"{self.path} was built with other {self.config.backbone} weights (fingerprint "
                    f"{self.config.weights}, these are {backbone.fingerprint}); pass the same --weights")
            self._backbone = backbone
        return self._backbone

    # -- records -------------------------------------------------------------------------------
    def record(self, record_id: int) -> ImageRecord:
        return self.store.get(int(record_id))

    def record_of_path(self, path: str | os.PathLike) -> ImageRecord:
        """The record of an indexed file, by its path (relative paths are taken from the current folder)."""
        record_id = self.store.id_of_path(str(Path(path).resolve()))
        if record_id is None:
            raise KeyError(f"{path} is not in this index")
        return self.store.get(record_id)

    def records(self) -> Iterator[ImageRecord]:
        return self.store.records()

    # -- search --------------------------------------------------------------------------------
    def embed(self, images: Sequence[ImageSource]) -> list[QueryFeatures]:
        """Descriptors of query images (paths, PIL images or arrays), computed as the index's were."""
        if self.projections is None:
            raise IndexStateError(f"{self.path} is empty; index some images first")
        prepared = [load_prepared(image, self.config, self.backbone.input_size) for image in images]
        descriptors = describe(extract(self.backbone, prepared), self.projections)
        return [QueryFeatures(_describe_source(image), _row(descriptors, i), p.digest)
                for i, (image, p) in enumerate(zip(images, prepared))]

    def search(self, image: ImageSource, k: int = 10, **options) -> SearchResponse:
        """The k best references for `image`: see `search_batch` for the options."""
        return self.search_batch([image], k, **options)[0]

    def search_batch(self, images: Sequence[ImageSource], k: int = 10, *, class_wnid: str | None = None,
                     any_class: bool = False, exclude_self: bool = False,
                     global_candidates: int | None = None, luminance_weight: float | None = None,
                     rescue_candidates: int | None = None, rerank: bool = True) -> list[SearchResponse]:
        """Search each image: restrict to its predicted class (or `class_wnid`, or none with `any_class`),
        widening to the next most probable classes and then to all when too few images are there; take
        the `global_candidates` best by global cosine; re-rank them by d_sem + luminance_weight * d_lum
        (or keep the global order with `rerank=False`). A query file that is itself in the index comes
        back first unless `exclude_self`. A search restricted to predicted classes also keeps the images
        among the `rescue_candidates` best of all classes that are closer than any image of those classes."""
        if k < 1:
            raise ValueError("k must be at least 1")
        if len(self) == 0:
            raise IndexStateError(f"{self.path} holds no images")
        if class_wnid is not None:
            classes.class_index(class_wnid)
        candidates = max(k, global_candidates or self.config.global_candidates)
        weight = self.config.luminance_weight if luminance_weight is None else luminance_weight
        rescue = self.config.rescue_candidates if rescue_candidates is None else rescue_candidates
        params = {"k": k, "global_candidates": candidates, "luminance_weight": weight, "rerank": rerank,
                  "rescue_candidates": rescue,
                  "class": class_wnid, "any_class": any_class, "exclude_self": exclude_self}
        started = time.perf_counter()
        queries = self.embed(images)
        forward_ms = (time.perf_counter() - started) * 1000 / len(images)
        responses = []
        for query in queries:
            started = time.perf_counter()
            response = self._search_one(query, k, class_wnid, any_class, exclude_self, candidates, weight, rescue,
                                         rerank)
            response.search_ms = round((time.perf_counter() - started) * 1000, 2)
            response.forward_ms = round(forward_ms, 2)
            response.params = params
            responses.append(response)
        return responses

    def colorize(self, image: ImageSource, topk: int = 3, method: str | None = None, **options):
        """Colorize `image` from its `topk` references in this index with `method` (default: colorize's
        default method). `options` are `saturation` (see `colorize.colorize`) and search options (see
        `search_batch`)."""
        from colorize import DEFAULT_METHOD, colorize_with_index

        return colorize_with_index(self, image, topk, method or DEFAULT_METHOD, **options)

    def _search_one(self, query: QueryFeatures, k: int, class_wnid: str | None, any_class: bool,
                    exclude_self: bool, candidates: int, weight: float, rescue: int,
                    rerank: bool) -> SearchResponse:
        descriptors = query.descriptors
        probabilities = descriptors.probabilities[0]
        wnids = classes.wnids()
        top = np.argsort(-probabilities)
        predicted = [ClassGuess(wnids[c], classes.class_name(wnids[c]), round(float(probabilities[c]), 4))
                     for c in top[:5]]
        notes: list[str] = []
        self_ids = set(self.store.ids_with_digest(query.digest)) if query.digest else set()
        if exclude_self and len(self) <= len(self_ids):
            raise IndexStateError("the index holds no image other than the query itself")
        wanted = k + (len(self_ids) if exclude_self else 0)
        chosen = None if any_class else self._choose_classes(top, class_wnid, wanted, notes)
        searched = min(candidates + len(self_ids), len(self))
        similarities, ids = self.global_index.search(descriptors.global_[0][None], searched, chosen)
        found = [(float(s), int(i)) for s, i in zip(similarities[0], ids[0])
                 if i >= 0 and not (exclude_self and i in self_ids)]
        if chosen is not None and class_wnid is None and rescue > 0:
            found.extend(self._rescued(descriptors.global_[0], rescue, found, self_ids if exclude_self else set(),
                                       notes))
        if not exclude_self:
            missing = sorted(self_ids - {i for _, i in found})
            vectors = self.store.global_vectors_of(missing, self.global_index.dim)
            found.extend((float(v @ descriptors.global_[0]), i) for v, i in zip(vectors, missing))
        found.sort(key=lambda pair: -pair[0])
        found = [f for f in found if f[1] in self_ids] + [f for f in found if f[1] not in self_ids][:candidates]
        if k > len(found):
            notes.append(f"only {len(found)} images to rank (k={k})")
        results = self._rank(found, descriptors, k, weight, rerank)
        searched_classes = None if chosen is None else [wnids[c] for c in chosen]
        return SearchResponse(query.source, results, predicted, searched_classes, notes)

    def _rescued(self, query_global: np.ndarray, rescue: int, found: list[tuple[float, int]],
                 excluded: set[int], notes: list[str]) -> list[tuple[float, int]]:
        best_in_class = found[0][0] if found else -np.inf
        similarities, ids = self.global_index.search(query_global[None], rescue, None)
        known = {i for _, i in found} | excluded
        rescued = [(float(s), int(i)) for s, i in zip(similarities[0], ids[0])
                   if i >= 0 and s > best_in_class and i not in known]
        if rescued:
            notes.append(f"also ranked {_count(len(rescued), 'image')} from other classes, closer to the query "
                         "than any image of the searched classes")
        return rescued

    def _choose_classes(self, ranked_classes: np.ndarray, class_wnid: str | None, k: int,
                        notes: list[str]) -> list[int] | None:
        sizes = self.global_index.class_sizes()
        first = classes.class_index(class_wnid) if class_wnid else int(ranked_classes[0])
        chosen, total = [first], int(sizes[first])
        for candidate in ranked_classes:
            if total >= k or len(chosen) >= self.config.widen_classes:
                break
            candidate = int(candidate)
            if candidate != first and sizes[candidate] > 0:
                chosen.append(candidate)
                total += int(sizes[candidate])
        wnid = classes.wnids()[first]
        held = _count(int(sizes[first]), "image")
        if total < k:
            notes.append(f"class {wnid} ({classes.class_name(wnid)}) holds {held}, fewer than {k}, and so do the "
                         f"{_count(len(chosen) - 1, 'next most probable class')}: searched all classes")
            return None
        if len(chosen) > 1:
            notes.append(f"class {wnid} ({classes.class_name(wnid)}) holds {held}, fewer than {k}: widened to "
                         f"the {_count(len(chosen) - 1, 'next most probable class')}")
        return chosen

    def _rank(self, found: list[tuple[float, int]], descriptors: Descriptors, k: int, weight: float,
              rerank: bool) -> list[SearchResult]:
        if not found:
            return []
        global_sims = np.array([s for s, _ in found], np.float32)
        ids = [i for _, i in found]
        dims = self.manifest.dims
        cells, histograms = self.store.local_features(ids, self.config.grid ** 2, dims["cell"], self.config.hist_bins)
        local = local_scores(descriptors.cells[0], descriptors.histograms[0], cells, histograms)
        scores = local.combined(weight)
        order = np.lexsort((-global_sims, scores)) if rerank else np.argsort(-global_sims, kind="stable")
        order = order[:k]
        records = self.store.get_many([ids[j] for j in order])
        return [SearchResult(rank=rank, id=record.id, path=record.path, label=record.label,
                             label_name=classes.class_name(record.label), score=round(float(scores[j]), 5),
                             semantic=round(float(local.semantic[j]), 5),
                             luminance=round(float(local.luminance[j]), 5),
                             global_similarity=round(float(global_sims[j]), 5))
                for rank, (j, record) in enumerate(zip(order, records), start=1)]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}es" if noun.endswith("class") else f"{n} {noun}s"


def _row(descriptors: Descriptors, row: int) -> Descriptors:
    return Descriptors(descriptors.probabilities[row:row + 1], descriptors.global_[row:row + 1],
                       descriptors.cells[row:row + 1], descriptors.histograms[row:row + 1])


def _describe_source(image: ImageSource) -> str:
    if isinstance(image, (str, os.PathLike)):
        return str(image)
    return f"<{type(image).__name__}>"
