"""The local engine: decoding on worker threads, forward passes in `streams` threads side by side."""
from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from ..config import IndexConfig
from ..features import PreparedImage, extract
from ..images import ImageError, ImageFile
from .base import ExtractedBatch, Unreadable, prepare_safely

if TYPE_CHECKING:
    from ..backbones import Backbone


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
        for file, result in self._prepared_stream(files):
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

    def _prepared_stream(self, files: list[ImageFile]) -> Iterator[tuple[ImageFile, PreparedImage | ImageError]]:
        size = self.backbone.input_size
        if self.workers == 0:
            for file in files:
                yield file, prepare_safely(file, self.config, size)
            return
        window = 4 * max(self.batch_size, self.workers)
        with ThreadPoolExecutor(self.workers) as pool:
            pending: deque = deque()
            remaining = iter(files)
            for file in remaining:
                pending.append((file, pool.submit(prepare_safely, file, self.config, size)))
                if len(pending) >= window:
                    break
            while pending:
                file, future = pending.popleft()
                following = next(remaining, None)
                if following is not None:
                    pending.append((following, pool.submit(prepare_safely, following, self.config, size)))
                yield file, future.result()


def _finished(files: list[ImageFile], images: list[PreparedImage], future) -> ExtractedBatch:
    return ExtractedBatch(files, [image.original_size for image in images], [image.digest or "" for image in images],
                          future.result())
