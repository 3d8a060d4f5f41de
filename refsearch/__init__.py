"""refsearch: find colour reference photos for a grayscale photo, and colorize it from them."""
from __future__ import annotations

__version__ = "0.1.0"

from .backbones import BackboneError, available_backbones, create_backbone, register_backbone
from .build import BuildSummary, build_index, compact_index, remove_images
from .config import IndexConfig, SearchSettings
from .errors import (ConfigMismatchError, IndexLockedError, IndexStateError, InvalidArgumentError, NotFoundError,
                     RefsearchError)
from .images import ImageError
from .results import ClassGuess, SearchResponse, SearchResult
from .search import Index
from .store import ImageRecord
from .writer import IndexWriter

__all__ = ["BackboneError", "BuildSummary", "ClassGuess", "ConfigMismatchError", "ImageError", "ImageRecord",
           "Index", "IndexConfig", "IndexLockedError", "IndexStateError", "IndexWriter", "InvalidArgumentError",
           "NotFoundError", "RefsearchError", "SearchResponse", "SearchResult", "SearchSettings", "__version__",
           "available_backbones", "build_index", "compact_index", "create_backbone", "register_backbone",
           "remove_images"]
