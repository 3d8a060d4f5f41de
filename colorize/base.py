"""The colorizer interface: a grayscale target and its references in, an RGB result out."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np
from PIL import Image

from refsearch.errors import RefsearchError

from .hints import Hints


class ColorizeError(RefsearchError, RuntimeError):
    """A colorization that cannot be done; the message says why and, for a plugin, names it."""


class RetrievedReference(Protocol):
    path: str
    score: float


class RetrievedReferences(Protocol):
    results: Sequence[RetrievedReference]
    notes: Sequence[str]


class IndexNetwork(Protocol):
    backbone: Any


class ReferenceIndex(Protocol):
    """What `colorize_with_index` needs of an index (refsearch.Index is one): where it is, its network
    (so the target is seen as the references were), and a search returning ranked references."""

    path: Any
    network: IndexNetwork

    def search(self, image: Any, k: int = ..., *, request: Any = ..., **options: Any) -> RetrievedReferences: ...


@dataclass(frozen=True)
class Reference:
    """A colour photo to take colours from, with its retrieval score (None when a person chose it)."""

    image: Image.Image
    score: float | None = None
    name: str = ""


@dataclass
class ColorizeResult:
    """The colorized target at its full size, with per pixel the confidence in [0, 1] of its colour and the
    index of the reference it came from (-1 where no reference gave it, e.g. where colour points govern);
    `references` are those used, in the order `source` counts them, and `hints` the colour points
    applied."""

    image: Image.Image
    confidence: np.ndarray
    source: np.ndarray
    method: str
    references: list[Reference] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    hints: Hints = field(default_factory=Hints)


class Colorizer(ABC):
    """A colorization method. `colorize` gets the target's luminance (a mode L image) and its references,
    best first, and returns an RGB image of the target's size whose luminance is the target's."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    @abstractmethod
    def colorize(self, target: Image.Image, references: Sequence[Reference]) -> ColorizeResult:
        ...
