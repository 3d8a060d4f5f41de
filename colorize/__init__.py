"""Colorize a grayscale photo from colour reference photos (after He et al., Deep Exemplar-based
Colorization, 2018). `colorize(target, references, method="exemplar")` is the entry point; methods are
plugins (see `colorize.registry`).

Importing it loads no torch: the methods that run a network (and `ChromaPrior`, loaded on first use of
its name) import it when they are created."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .api import colorize, colorize_with_index
from .base import ColorizeError, Colorizer, ColorizeResult, Reference
from .batch import FolderSummary, colorize_folder
from .chroma import ChromaColorizer, ChromaPrediction, WorkingImage
from .registry import (DEFAULT_METHOD, ENTRY_POINT_GROUP, available_methods, create_colorizer,
                       describe_methods, register_colorizer)
from .sheet import contact_sheet

if TYPE_CHECKING:
    from .prior import ChromaPrior

__all__ = ["DEFAULT_METHOD", "ENTRY_POINT_GROUP", "ChromaColorizer", "ChromaPrediction", "ChromaPrior",
           "ColorizeError", "ColorizeResult", "Colorizer", "FolderSummary", "Reference", "WorkingImage",
           "available_methods", "colorize", "colorize_folder", "colorize_with_index", "contact_sheet",
           "create_colorizer", "describe_methods", "register_colorizer"]


def __getattr__(name: str):
    if name == "ChromaPrior":
        from .prior import ChromaPrior

        return ChromaPrior
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
