"""The two-stage search of described queries over one generation of an index: the class choice (and its
widening), the global ranking, the rescue of near copies from other classes, and the local re-rank.

It reads the generation through `StoredGeneration`, which `refsearch.Index` provides.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from . import classes
from .config import SearchSettings
from .errors import IndexStateError
from .features import Descriptors, PreparedImage
from .images import ImageError
from .request import SearchRequest
from .rerank import local_scores
from .results import ClassGuess, SearchResponse, SearchResult
from .lock import writer_at_work
from .store import ImageRecord
from .wording import count


@dataclass(frozen=True)
class QueryFeatures:
    """A query image's descriptors, in the index's stored form, and its file digest when it has one."""

    source: str
    descriptors: Descriptors
    digest: str | None


@dataclass(frozen=True)
class EmbeddedBatch:
    """Photos as decoded (or why they could not be), and the descriptors of those that could."""

    sources: list
    prepared: list[PreparedImage | ImageError]
    queries: list[QueryFeatures]
    forward_ms: float  # the network and PCA, per readable photo
    runtime: str = ""  # what ran the network, and its version


class StoredGeneration(Protocol):
    """What the search reads of an index."""

    path: object
    search_settings: SearchSettings

    def __len__(self) -> int: ...

    def class_sizes(self) -> np.ndarray: ...

    def ids_with_digest(self, digest: str) -> list[int]: ...

    def records_of(self, ids: Iterable[int]) -> list[ImageRecord]: ...

    def local_features(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]: ...

    def global_vectors_of(self, ids: Sequence[int]) -> np.ndarray: ...

    def search_global(self, vectors: np.ndarray, k: int, classes_to_search: list[int] | None = None, *,
                      approximate: bool | None = None) -> tuple[np.ndarray, np.ndarray]: ...


def check_searchable(stored: StoredGeneration) -> None:
    if len(stored) == 0:
        writer = writer_at_work(Path(str(stored.path)))
        if writer is not None:
            raise IndexStateError(f"{stored.path} holds no images yet: it is being built by {writer}",
                                  "query it when the build has published its first images")
        raise IndexStateError(f"{stored.path} holds no images", "index some images first")


def search_queries(stored: StoredGeneration, queries: Sequence[QueryFeatures],
                   request: SearchRequest) -> list[SearchResponse]:
    """Each query's response to `request`, timed, with how it was asked."""
    check_searchable(stored)
    settings = request.settings(stored.search_settings)
    params = request.params(settings)
    responses = []
    for query in queries:
        started = time.perf_counter()
        response = _Search(stored, request, settings).answer(query)
        response.search_ms = round((time.perf_counter() - started) * 1000, 2)
        response.params = params
        responses.append(response)
    return responses


def search_embedded(stored: StoredGeneration, batch: EmbeddedBatch,
                    request: SearchRequest) -> list[SearchResponse | ImageError]:
    """Each photo of the batch's response to `request`, or its ImageError where it could not be read."""
    responses = iter(search_queries(stored, batch.queries, request))
    answers: list[SearchResponse | ImageError] = []
    for item in batch.prepared:
        if isinstance(item, ImageError):
            answers.append(item)
            continue
        response = next(responses)
        response.forward_ms = round(batch.forward_ms, 2)
        response.runtime = batch.runtime
        answers.append(response)
    return answers


class _Search:
    """One query's search under one request."""

    def __init__(self, stored: StoredGeneration, request: SearchRequest, settings: SearchSettings):
        self.stored, self.request, self.settings = stored, request, settings
        self.candidates = max(request.k, settings.global_candidates)
        self.notes: list[str] = []

    def answer(self, query: QueryFeatures) -> SearchResponse:
        stored, request, k, candidates = self.stored, self.request, self.request.k, self.candidates
        descriptors = query.descriptors
        probabilities = descriptors.probabilities[0]
        query_global = descriptors.global_[0]
        wnids = classes.wnids()
        top = np.argsort(-probabilities)
        predicted = [ClassGuess(wnids[c], classes.class_name(wnids[c]), round(float(probabilities[c]), 4))
                     for c in top[:5]]
        self_ids = set(stored.ids_with_digest(query.digest)) if query.digest else set()
        if request.exclude_self and len(stored) <= len(self_ids):
            raise IndexStateError("the index holds no image other than the query itself")
        # What is searched depends on the query and the settings, never on k: `-k 3` is the first three of `-k 5`.
        wanted = self.settings.min_class_images + (len(self_ids) if request.exclude_self else 0)
        chosen = None if request.any_class else self._choose_classes(probabilities, top, wanted)
        excluded = self_ids if request.exclude_self else set()
        found = self._candidates(query_global, chosen, excluded)
        if chosen is not None and request.class_wnid is None and self.settings.rescue_candidates > 0:
            found.extend(self._rescued(query_global, found, excluded))
        if not request.exclude_self:
            missing = sorted(self_ids - {i for _, i in found})
            vectors = stored.global_vectors_of(missing) if missing else []
            found.extend((float(v @ query_global), i) for v, i in zip(vectors, missing))
        found.sort(key=lambda pair: -pair[0])
        found = [f for f in found if f[1] in self_ids] + [f for f in found if f[1] not in self_ids][:candidates]
        results = self._rank(found, descriptors, k)
        if len(results) < k and chosen is not None:
            # The searched classes ran out: the rest come from all classes, ranked after them.
            more = self._candidates(query_global, None, excluded | {i for _, i in found})
            extra = self._rank(more, descriptors, k - len(results), first_rank=len(results) + 1)
            if extra:
                searched = (f"class {request.class_wnid} ({classes.class_name(request.class_wnid)}) holds"
                            if request.class_wnid else "the searched classes hold")
                self.notes.append(f"{searched} {count(len(results), 'image')} to rank; ranks "
                                  f"{len(results) + 1} to {len(results) + len(extra)} come from all classes")
            results += extra
        if k > len(results):
            self.notes.append(f"only {len(results)} images to rank (k={k})")
        searched_classes = None if chosen is None else [wnids[c] for c in chosen]
        return SearchResponse(query.source, results, predicted, searched_classes, self.notes)

    def _candidates(self, query_global: np.ndarray, chosen: list[int] | None,
                    excluded: set[int]) -> list[tuple[float, int]]:
        """(global similarity, id) of the best candidates in the chosen classes (all: None), less `excluded`."""
        searched = min(self.candidates + len(excluded), len(self.stored))
        similarities, ids = self.stored.search_global(query_global[None], searched, chosen)
        return [(float(s), int(i)) for s, i in zip(similarities[0], ids[0]) if i >= 0 and i not in excluded]

    def _rescued(self, query_global: np.ndarray, found: list[tuple[float, int]],
                 excluded: set[int]) -> list[tuple[float, int]]:
        best_in_class = found[0][0] if found else -np.inf
        # Only images closer than the best of the searched classes are kept: near copies, which sit by
        # their own class's mean, so probing the nearest classes finds them.
        similarities, ids = self.stored.search_global(query_global[None], self.settings.rescue_candidates,
                                                      approximate=True)
        known = {i for _, i in found} | excluded
        rescued = [(float(s), int(i)) for s, i in zip(similarities[0], ids[0])
                   if i >= 0 and s > best_in_class and i not in known]
        if rescued:
            self.notes.append(f"also ranked {count(len(rescued), 'image')} from other classes, closer to the "
                              "query than any image of the searched classes")
        return rescued

    def _choose_classes(self, probabilities: np.ndarray, ranked_classes: np.ndarray, wanted: int) -> list[int] | None:
        """The class the user named, alone; else the predicted class, widened while the chosen classes hold
        fewer than `wanted` images, or None (every class) when none of the classes tried holds any."""
        settings, class_wnid = self.settings, self.request.class_wnid
        sizes = self.stored.class_sizes()
        if class_wnid:  # a class the user names is searched alone
            return [classes.class_index(class_wnid)]
        first = int(ranked_classes[0])
        chosen, total = [first], int(sizes[first])
        if total < wanted:
            if settings.class_choice == "taxonomy":
                from .taxonomy import expected_similarity

                nearness = expected_similarity(probabilities, settings.taxonomy_sharpness)
                # ties (classes equally near in meaning) go to the more probable
                order = np.lexsort((-probabilities, -nearness))
            else:
                order = ranked_classes
            for candidate in order:
                if total >= wanted or len(chosen) >= settings.widen_classes:
                    break
                candidate = int(candidate)
                if candidate != first and sizes[candidate] > 0:
                    chosen.append(candidate)
                    total += int(sizes[candidate])
        if len(chosen) == 1 and total > 0:
            return chosen
        wnid = classes.wnids()[first]
        held = f"class {wnid} ({classes.class_name(wnid)}) holds {count(int(sizes[first]), 'image')}"
        if total == 0:  # only when widening is off (widen_classes 1)
            self.notes.append(f"{held}: searched all classes")
            return None
        which = "the nearest in meaning" if settings.class_choice == "taxonomy" else "the next most probable"
        self.notes.append(f"{held}, fewer than {wanted}: widened to {count(len(chosen) - 1, 'more class')} ({which})")
        return chosen

    def _rank(self, found: list[tuple[float, int]], descriptors: Descriptors, k: int,
              first_rank: int = 1) -> list[SearchResult]:
        if not found:
            return []
        global_sims = np.array([s for s, _ in found], np.float32)
        ids = [i for _, i in found]
        cells, histograms = self.stored.local_features(ids)
        local = local_scores(descriptors.cells[0], descriptors.histograms[0], cells, histograms)
        scores = local.combined(self.settings.luminance_weight)
        order = (np.lexsort((-global_sims, scores)) if self.request.rerank
                 else np.argsort(-global_sims, kind="stable"))[:k]
        records = self.stored.records_of([ids[j] for j in order])
        return [SearchResult(rank=rank, id=record.id, path=record.path, label=record.label,
                             label_name=classes.class_name(record.label), score=round(float(scores[j]), 5),
                             semantic=round(float(local.semantic[j]), 5),
                             luminance=round(float(local.luminance[j]), 5),
                             global_similarity=round(float(global_sims[j]), 5))
                for rank, (j, record) in enumerate(zip(order, records), start=first_rank)]

