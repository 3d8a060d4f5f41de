"""The local engines: images decode on worker threads while forward passes run in `streams` threads
side by side; a build hands the features back in file order, a batch query searches each batch here."""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import IndexConfig
from ..features import PreparedImage, RawFeatures, extract
from ..images import ImageError, ImageFile
from .answers import answer_lines
from .decoding import prepared_in_order
from .protocol import ExtractedBatch, Unreadable

if TYPE_CHECKING:
    from ..network_protocol import Network
    from ..request import SearchRequest
    from ..search import Index


class LocalEngine:
    def __init__(self, network: "Network", config: IndexConfig, batch_size: int, workers: int, streams: int):
        self.network, self.config = network, config
        self.batch_size, self.workers, self.streams = batch_size, workers, streams

    def extract(self, files: list[ImageFile]) -> Iterator[ExtractedBatch | Unreadable]:
        """Batches in file order; up to `streams` batches are in the network at once."""
        jobs = _in_flight(self._batches(files), self.streams, lambda batch: extract(self.network, batch[1]))
        for job, raw in jobs:
            yield job if isinstance(job, Unreadable) else _finished(*job, raw)

    def _batches(self, files: list[ImageFile]) -> Iterator[tuple[list[ImageFile], list[PreparedImage]] | Unreadable]:
        batch_files, batch_images = [], []
        prepared = prepared_in_order((f.path for f in files), self.config, self.network.input_size, self.workers,
                                     lookahead=4 * max(self.batch_size, self.workers))
        for file, result in zip(files, prepared):
            if isinstance(result, ImageError):
                yield Unreadable(file, result)
                continue
            batch_files.append(file)
            batch_images.append(result)
            if len(batch_images) == self.batch_size:
                yield batch_files, batch_images
                batch_files, batch_images = [], []
        if batch_images:
            yield batch_files, batch_images


class LocalQueryEngine:
    def __init__(self, index: "Index", request: "SearchRequest", batch_size: int, workers: int, streams: int):
        self.index, self.request = index, request
        self.batch_size, self.workers, self.streams = batch_size, workers, streams

    def answer(self, photos: list[Path]) -> Iterator[list[dict]]:
        """Lines in photo order; up to `streams` batches are in the network at once, and each is searched
        here, in turn, when its descriptors are ready."""
        index = self.index
        prepared = prepared_in_order(photos, index.config, index.network.input_size, self.workers,
                                     lookahead=4 * max(self.batch_size, self.workers))
        batches = ((batch, list(islice(prepared, len(batch))))
                   for batch in (photos[start:start + self.batch_size]
                                 for start in range(0, len(photos), self.batch_size)))
        for _, embedded in _in_flight(batches, self.streams, lambda batch: index.embed_batch(*batch)):
            yield answer_lines(index, embedded, self.request)


def _in_flight(jobs: Iterable, streams: int, work: Callable) -> Iterator[tuple]:
    """(job, work(job)) for each job, in order, with up to `streams` jobs worked on side by side; an
    Unreadable among the jobs is passed straight through, as (job, None), taking no stream and so coming
    out ahead of jobs still being worked on."""
    with ThreadPoolExecutor(streams) as pool:
        running: deque = deque()
        for job in jobs:
            if isinstance(job, Unreadable):
                yield job, None
                continue
            running.append((job, pool.submit(work, job)))
            if len(running) >= streams:
                done, future = running.popleft()
                yield done, future.result()
        while running:
            done, future = running.popleft()
            yield done, future.result()


def _finished(files: list[ImageFile], images: list[PreparedImage], raw: RawFeatures) -> ExtractedBatch:
    return ExtractedBatch(files, [image.original_size for image in images], [image.digest or "" for image in images],
                          raw)
