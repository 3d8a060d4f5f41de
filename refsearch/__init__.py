"""refsearch: find colour reference photos for a grayscale photo, and colorize it from them."""
from __future__ import annotations

__version__ = "0.1.0"

from .backbones import BackboneError, available_backbones, create_backbone, register_backbone
from .build import BuildSummary, build_index
from .config import ConfigMismatchError, IndexConfig
from .images import ImageError
from .manifest import IndexStateError
from .results import ClassGuess, SearchResponse, SearchResult
from .search import Index
from .store import ImageRecord

__all__ = ["BackboneError", "BuildSummary", "ClassGuess", "ConfigMismatchError", "ImageError", "ImageRecord",
           "Index", "IndexConfig", "IndexStateError", "SearchResponse", "SearchResult", "__version__",
           "available_backbones", "build_index", "create_backbone", "register_backbone"]
