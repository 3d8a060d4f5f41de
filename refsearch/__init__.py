"""refsearch: find colour reference photos for a grayscale photo, and colorize it from them."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# The one place the version is written: pyproject.toml reads it from here.
__version__ = "0.1.0"

# Public name -> the module defining it. Each is imported on first access (PEP 562), so that
# `import refsearch` (and the command line's --help) does not pay for torch, faiss and PIL up front.
_LAZY_NAMES = {
    "BackboneError": ".backbones",
    "available_backbones": ".backbones",
    "create_backbone": ".backbones",
    "register_backbone": ".backbones",
    "BatchQuerySummary": ".batch_query",
    "query_folder": ".batch_query",
    "BuildSummary": ".build",
    "build_index": ".build",
    "compact_index": ".removal",
    "remove_images": ".removal",
    "IndexConfig": ".config",
    "SearchSettings": ".config",
    "ConfigMismatchError": ".errors",
    "DiskFullError": ".errors",
    "IndexDamagedError": ".errors",
    "IndexLockedError": ".errors",
    "IndexStateError": ".errors",
    "InvalidArgumentError": ".errors",
    "NotFoundError": ".errors",
    "OutputLockedError": ".errors",
    "RefsearchError": ".errors",
    "ImageError": ".images",
    "ClassGuess": ".results",
    "SearchResponse": ".results",
    "SearchResult": ".results",
    "SearchRequest": ".request",
    "SearchRequestError": ".request",
    "Index": ".search",
    "ImageRecord": ".store",
    "IndexWriter": ".writer",
    "VerifyReport": ".verify",
    "verify_index": ".verify",
}

# The names above, and __version__ (tests check that the two agree).
__all__ = ["BackboneError", "BatchQuerySummary", "BuildSummary", "ClassGuess", "ConfigMismatchError", "DiskFullError",
           "ImageError", "ImageRecord", "Index", "IndexConfig", "IndexDamagedError", "IndexLockedError",
           "IndexStateError", "IndexWriter", "InvalidArgumentError", "NotFoundError", "OutputLockedError",
           "RefsearchError", "SearchRequest", "SearchRequestError", "SearchResponse", "SearchResult",
           "SearchSettings", "VerifyReport", "__version__", "available_backbones", "build_index", "compact_index",
           "create_backbone", "query_folder", "register_backbone", "remove_images", "verify_index"]

if TYPE_CHECKING:  # for type checkers and IDEs, which do not run __getattr__
    from .backbones import BackboneError, available_backbones, create_backbone, register_backbone
    from .batch_query import BatchQuerySummary, query_folder
    from .build import BuildSummary, build_index
    from .config import IndexConfig, SearchSettings
    from .errors import (ConfigMismatchError, DiskFullError, IndexDamagedError, IndexLockedError, IndexStateError,
                         InvalidArgumentError, NotFoundError, OutputLockedError, RefsearchError)
    from .images import ImageError
    from .removal import compact_index, remove_images
    from .request import SearchRequest, SearchRequestError
    from .results import ClassGuess, SearchResponse, SearchResult
    from .search import Index
    from .store import ImageRecord
    from .verify import VerifyReport, verify_index
    from .writer import IndexWriter


def __getattr__(name: str):
    module = _LAZY_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_NAMES))
