"""Dataset curation over an index: duplicates, outliers, label issues, clusters, subsets and export.

Everything works from the stored global descriptors and a k-nearest-neighbour graph built through
FAISS (`neighbours.py`), so nothing is n x n and a million images fit in memory; near-duplicates read
the image files of their candidate pairs to verify them (`verify.py`). A `Curator` works on anything
that provides `CurationSource` (`refsearch.Index` does, as `index.curation`); this package imports
nothing from `refsearch.search`.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import numpy as np

from .. import classes
from ..errors import IndexStateError, InvalidArgumentError
from ..images import ImageSource
from ..store import ImageRecord, RecordColumns
from .clusters import default_cluster_count, kmeans_clusters
from .duplicates import (
    CopyGroups,
    RowGroup,
    copy_groups,
    exact_duplicate_groups,
    pair_similarity,
    similarity_groups,
)
from .export import EXPORT_LAYOUTS, EXPORT_MODES, ExportSummary, Subset
from .neighbours import NeighbourGraph, neighbour_graph
from .outliers import disputed_labels, outlier_scores
from .results import (
    Cluster,
    CopyCheck,
    DuplicateGroup,
    DuplicateGroups,
    LabelIssue,
    Member,
    Neighbour,
    Outlier,
    Results,
)

# The similarity from which a pair of neighbours is checked for being copies: low enough that copies
# under heavy combined edits are checked (docs/curation.md), since the check from pixels keeps precision.
CANDIDATE_THRESHOLD = 0.5
# The similarity from which outliers take two images for copies without checking their pixels: the
# best F1 of the similarity alone on one half of the near-duplicate benchmark.
NEAR_DUPLICATE_THRESHOLD = 0.675
# Neighbours per image in the graph: enough to link every copy of a photo edited several ways.
GRAPH_NEIGHBOURS = 10


class CurationSource(Protocol):
    """What curation needs of an index."""

    source_root: str

    def records_of(self, ids: Iterable[int]) -> list[ImageRecord]: ...

    def record_columns(self) -> RecordColumns: ...

    def global_vectors(self) -> tuple[np.ndarray, np.ndarray]: ...

    def global_vectors_of(self, ids: Sequence[int]) -> np.ndarray: ...

    def local_features(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]: ...

    def search_global(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...

    def embed(self, images: Sequence[ImageSource]) -> list: ...


@dataclass
class _Descriptors:
    table: RecordColumns
    vectors: np.ndarray  # global descriptors, rows as in `table`
    graph: NeighbourGraph | None = None


class Curator:
    """Curation over one generation of an index. The descriptors and the neighbour graph are read once
    and reused across calls."""

    def __init__(self, source: CurationSource):
        self.source = source
        self._curation: _Descriptors | None = None

    # -- duplicates ----------------------------------------------------------------------------
    def exact_duplicates(self) -> DuplicateGroups:
        """Groups of images whose files are byte-for-byte identical, largest group first."""
        return self._duplicate_groups(exact_duplicate_groups(self._curation_data().table))

    def near_duplicates(self, threshold: float = CANDIDATE_THRESHOLD, *, neighbours: int = GRAPH_NEIGHBOURS,
                        workers: int | None = None, progress: bool = False) -> DuplicateGroups:
        """Groups of copies of one picture (crops, resizes, recompression, grayscale, brightness and
        contrast changes, small rotations, captions and logos, and these combined; identical files too),
        largest group first, each led by the image to keep (the most pixels, then the largest file).

        Candidates are the pairs of images among each other's `neighbours` nearest whose similarity (the
        mean of the cosines of their global descriptors and of their 7x7 cell descriptors position by
        position) reaches `threshold`, and identical files. Each candidate pair is verified from the
        two files' pixels (`refsearch.curation.verify`): aligned by matching keypoints, its luminance
        must agree. Every member of a group is a verified copy of the group's first image and carries
        that check (`Member.check`, with why); pairs left unverified because a file could not be read
        are in `unreadable`. `workers` threads read and compare the files (default: up to 4)."""
        return self._duplicate_groups(self._copy_groups(threshold, neighbours, workers, progress))

    def check_copies(self, first: int, second: int) -> CopyCheck:
        """Whether the images with ids `first` and `second` are copies of one picture, from their pixels,
        and why (see `near_duplicates`)."""
        from .verify import CopyVerifier

        records = self.source.records_of([first, second])
        return CopyVerifier(workers=1).check(*records)

    # -- outliers and labels -------------------------------------------------------------------
    def outliers(self, n: int = 20, *, neighbours: int = GRAPH_NEIGHBOURS,
                 duplicate_threshold: float = NEAR_DUPLICATE_THRESHOLD) -> Results[Outlier]:
        """The n images least like their `neighbours` nearest images, most unusual first. The images whose
        similarity with it reaches `duplicate_threshold` (see `near_duplicates`; no pixels are checked
        here, so look-alikes count too) do not count as its neighbours, and such a group is listed once,
        by the image to keep."""
        if n < 1:
            raise InvalidArgumentError("n must be at least 1")
        data = self._curation_data()
        graph = self._graph(2 * neighbours)  # room for the neighbours that are copies
        copy_group = np.arange(len(data.table))
        for group in self._similarity_groups(duplicate_threshold, neighbours):
            copy_group[group.rows] = group.rows[0]
        scored = outlier_scores(graph, neighbours, copy_group)
        keepers = copy_group[np.argsort(-scored.scores, kind="stable")]
        _, first = np.unique(keepers, return_index=True)
        rows = keepers[np.sort(first)[:n]]
        records = self.source.records_of(data.table.ids[rows])
        nearest = scored.nearest[rows]
        return Results(
            Outlier(id=record.id, path=record.path, label=record.label,
                    score=round(float(scored.scores[row]), 5),
                    nearest_id=int(data.table.ids[near]) if near >= 0 else -1,
                    nearest_similarity=round(float(scored.nearest_similarity[row]), 5))
            for row, near, record in zip(rows, nearest, records))

    def label_issues(self, *, neighbours: int = GRAPH_NEIGHBOURS, min_confidence: float = 0.8,
                     min_agreement: float = 0.6) -> Results[LabelIssue]:
        """Images whose label disagrees with the network's prediction made with at least `min_confidence`
        (for labels taken from a folder or file name), or with the label that at least `min_agreement`
        of their `neighbours` nearest images carry; strongest evidence first. The network sees luminance
        only and confuses close classes, so read these as candidates to review (docs/curation.md)."""
        data = self._curation_data()
        table = data.table
        evidence = disputed_labels(self._graph(neighbours), table.labels, table.predictions,
                                   table.confidences, table.predicted_labels, k=neighbours,
                                   min_confidence=min_confidence, min_agreement=min_agreement)
        records = self.source.records_of(table.ids[evidence.rows])
        wnids = classes.wnids()
        reasons = {(True, False): "prediction", (False, True): "neighbours",
                   (True, True): "prediction and neighbours"}
        return Results(
            LabelIssue(id=record.id, path=record.path, label=record.label, label_source=record.label_source,
                       suggested=wnids[evidence.suggested[i]],
                       reason=reasons[bool(evidence.by_prediction[i]), bool(evidence.by_neighbours[i])],
                       confidence=record.confidence,
                       neighbour_agreement=round(float(evidence.agreement[i]), 4))
            for i, record in enumerate(records))

    # -- clusters and neighbours ---------------------------------------------------------------
    def clusters(self, n: int | None = None, *, seed: int = 0) -> Results[Cluster]:
        """k-means clusters of the images (n of them, default about sqrt(images / 2)), largest first,
        each led by the image nearest its centre."""
        data = self._curation_data()
        count = default_cluster_count(len(data.table)) if n is None else n
        assignment = kmeans_clusters(data.vectors, count, seed=seed)
        representatives = self.source.records_of(int(data.table.ids[rows[0]]) for rows in assignment.members)
        return Results(
            Cluster(number=number, members=tuple(data.table.ids[rows].tolist()),
                    representative_path=record.path, cohesion=round(cohesion, 5))
            for number, (rows, cohesion, record) in enumerate(zip(assignment.members, assignment.cohesion,
                                                                  representatives)))

    def similar(self, image_or_id: int | ImageSource, k: int = 10) -> Results[Neighbour]:
        """The k images most like an indexed image (by id, itself left out) or a new image (a path, PIL
        image or array), by the cosine of their global descriptors, across all classes."""
        if k < 1:
            raise InvalidArgumentError("k must be at least 1")
        if isinstance(image_or_id, (int, np.integer)):
            own_id = int(image_or_id)
            query = self.source.global_vectors_of([own_id])  # NotFoundError for an id not held
        else:
            own_id = None
            query = self.source.embed([image_or_id])[0].descriptors.global_
        similarities, ids = self.source.search_global(query, k + (own_id is not None))
        found = [(float(s), int(i)) for s, i in zip(similarities[0], ids[0]) if i >= 0 and i != own_id][:k]
        records = self.source.records_of(i for _, i in found)
        return Results(Neighbour(id=r.id, path=r.path, label=r.label, similarity=round(s, 5))
                       for (s, _), r in zip(found, records))

    # -- subsets, export, removal --------------------------------------------------------------
    def subset(self, ids: Iterable[int] | None = None, *, exclude: Iterable[int] = ()) -> Subset:
        """The images with the given ids (default: all), less those in `exclude`, for `export`."""
        dropped = {int(i) for i in exclude}
        chosen = self._curation_data().table.ids.tolist() if ids is None else ids
        return Subset(self.source.records_of, self.source.source_root, (i for i in chosen if int(i) not in dropped))

    def export(self, destination: str | os.PathLike, mode: str = "copy", *, layout: str = "relative",
               dry_run: bool = False) -> ExportSummary:
        """Export every image of the index; see `Subset.export`."""
        return self.subset().export(destination, mode, layout=layout, dry_run=dry_run)

    # -- shared --------------------------------------------------------------------------------
    def _curation_data(self) -> _Descriptors:
        if self._curation is None:
            table = self.source.record_columns()
            ids, vectors = self.source.global_vectors()
            if not np.array_equal(ids, table.ids):
                raise IndexStateError("the index's records and descriptors disagree", "rebuild it with --rebuild")
            self._curation = _Descriptors(table, vectors)
        return self._curation

    def _graph(self, k: int) -> NeighbourGraph:
        if k < 1:
            raise InvalidArgumentError("neighbours must be at least 1")
        data = self._curation_data()
        if data.graph is None or data.graph.k < min(k, len(data.table) - 1):
            data.graph = neighbour_graph(data.table.ids, data.vectors, max(k, GRAPH_NEIGHBOURS))
        return data.graph.first(k)

    def _similarity_of(self, threshold: float):
        if not -1.0 <= threshold <= 1.0:
            raise InvalidArgumentError(f"threshold is a similarity from -1 to 1 (got {threshold})")
        return partial(pair_similarity, vectors=self._curation_data().vectors, read_cells=self._read_cells)

    def _similarity_groups(self, threshold: float, neighbours: int) -> list[RowGroup]:
        similarity_of = self._similarity_of(threshold)
        table = self._curation_data().table
        return similarity_groups(self._graph(neighbours), table, threshold, similarity_of)

    def _copy_groups(self, threshold: float, neighbours: int, workers: int | None,
                     progress: bool) -> CopyGroups:
        from .verify import CopyVerifier

        similarity_of = self._similarity_of(threshold)
        if workers is not None and workers < 1:
            raise InvalidArgumentError("workers must be at least 1")
        table = self._curation_data().table
        verifier = CopyVerifier(workers)
        bar = None

        def verify(first: np.ndarray, second: np.ndarray) -> list[CopyCheck]:
            nonlocal bar
            rows = np.unique(np.concatenate([first, second]))
            records = dict(zip(rows.tolist(), self.source.records_of(table.ids[rows].tolist())))
            pairs = [(records[a], records[b]) for a, b in zip(first.tolist(), second.tolist())]
            if progress and bar is None and pairs:
                from tqdm import tqdm

                bar = tqdm(total=len(pairs), desc="checking pairs", unit="pair", leave=False)
            elif bar is not None:
                bar.total += len(pairs)
            return verifier.check_many(pairs, on_done=bar.update if bar is not None else None)

        try:
            return copy_groups(self._graph(neighbours), table, threshold, similarity_of, verify)
        finally:
            if bar is not None:
                bar.close()

    def _read_cells(self, rows: np.ndarray) -> np.ndarray:
        ids = self._curation_data().table.ids[rows]
        cells, _ = self.source.local_features(ids)
        return cells

    def _duplicate_groups(self, found: CopyGroups | list[RowGroup]) -> DuplicateGroups:
        table = self._curation_data().table
        groups = []
        for group in found.groups if isinstance(found, CopyGroups) else found:
            records = self.source.records_of(table.ids[group.rows].tolist())
            checks = group.checks or (None,) * len(records)
            members = tuple(Member(id=r.id, path=r.path, label=r.label, similarity=round(float(s), 5),
                                   width=r.width, height=r.height, check=check)
                            for r, s, check in zip(records, group.similarities, checks))
            digests = table.digests[group.rows]
            identical = bool(digests[0]) and bool((digests == digests[0]).all())
            groups.append(DuplicateGroup("exact" if identical else "near", members))
        groups.sort(key=lambda g: (-len(g), g.representative.id))
        if isinstance(found, CopyGroups):
            return DuplicateGroups(groups, candidate_pairs=found.candidate_pairs, unreadable=found.unreadable)
        return DuplicateGroups(groups)


__all__ = ["CANDIDATE_THRESHOLD", "EXPORT_LAYOUTS", "EXPORT_MODES", "NEAR_DUPLICATE_THRESHOLD", "Cluster",
           "CopyCheck", "CurationSource", "Curator", "DuplicateGroup", "DuplicateGroups", "ExportSummary",
           "LabelIssue", "Member", "Neighbour", "Outlier", "Results", "Subset"]
