"""What an engine does. A build engine turns image files into their raw features (decoded, histograms
computed, the backbone run), a batch at a time, and hands the batches back to the build, which projects
and stores them. A query engine answers photos with an index, a line of JSON each, and hands the lines
back to the batch query, which writes them. Engines differ in where that work runs."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..features import RawFeatures
from ..images import ImageError, ImageFile


@dataclass(frozen=True)
class ExtractedBatch:
    """Decoded and forwarded images, before projection."""

    files: list[ImageFile]
    sizes: list[tuple[int, int]]
    digests: list[str]
    raw: RawFeatures


@dataclass(frozen=True)
class Unreadable:
    file: ImageFile
    error: ImageError


class Engine(Protocol):
    def extract(self, files: list[ImageFile]) -> Iterator[ExtractedBatch | Unreadable]:
        """Every file once, as part of a batch or as unreadable; batches hold at most the build's batch size."""


class QueryEngine(Protocol):
    def answer(self, photos: list[Path]) -> Iterator[list[dict]]:
        """Every photo's line once (see `refsearch.engines.answers`), in photo order, a batch of lines at a time."""
