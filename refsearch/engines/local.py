"""The local engines: images decode on worker threads while forward passes run in `streams` threads
side by side; a build hands the features back in file order, a batch query searches each batch here."""
from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import IndexConfig
from ..features import PreparedImage, extract
from ..images import ImageError, ImageFile
from .base import ExtractedBatch, Unreadable, answer_embedded, embed_batch, prepared_in_order

if TYPE_CHECKING:
    from ..backbones import Backbone
    from ..search import Index


class LocalEngine:
    def __init__(self, backbone: "Backbone", config: IndexConfig, batch_size: int, workers: int, streams: int):
        self.backbone, self.config = backbone, config
        self.batch_size, self.workers, self.streams = batch_size, workers, streams

    def extract(self, files: list[ImageFile]) -> Iterator[ExtractedBatch | Unreadable]:
        """Batches in file order; up to `streams` batches are in the network at once."""
        with ThreadPoolExecutor(self.streams) as pool:
            running: deque = deque()
            for item in self._batches(files):
                if isinstance(item, Unreadable):
                    yield item
                    continue
                batch_files, images = item
                running.append((batch_files, images, pool.submit(extract, self.backbone, images)))
                if len(running) >= self.streams:
                    yield _finished(*running.popleft())
            while running:
                yield _finished(*running.popleft())

    def _batches(self, files: list[ImageFile]) -> Iterator[tuple[list[ImageFile], list[PreparedImage]] | Unreadable]:
        batch_files, batch_images = [], []
        prepared = prepared_in_order((f.path for f in files), self.config, self.backbone.input_size, self.workers,
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
    def __init__(self, index: "Index", k: int, options: dict, batch_size: int, workers: int, streams: int):
        self.index, self.k, self.options = index, k, options
        self.batch_size, self.workers, self.streams = batch_size, workers, streams

    def answer(self, photos: list[Path]) -> Iterator[list[dict]]:
        """Lines in photo order; up to `streams` batches are in the network at once, and each is searched
        here, in turn, when its descriptors are ready."""
        index = self.index
        prepared = prepared_in_order(photos, index.config, index.backbone.input_size, self.workers,
                                     lookahead=4 * max(self.batch_size, self.workers))
        with ThreadPoolExecutor(self.streams) as pool:
            running: deque = deque()
            for start in range(0, len(photos), self.batch_size):
                batch = photos[start:start + self.batch_size]
                running.append(pool.submit(embed_batch, index, batch, list(islice(prepared, len(batch)))))
                if len(running) >= self.streams:
                    yield answer_embedded(index, running.popleft().result(), self.k, self.options)
            while running:
                yield answer_embedded(index, running.popleft().result(), self.k, self.options)


def _finished(files: list[ImageFile], images: list[PreparedImage], future) -> ExtractedBatch:
    return ExtractedBatch(files, [image.original_size for image in images], [image.digest or "" for image in images],
                          future.result())
