"""Colorize a grayscale photo from colour reference photos (after He et al., Deep Exemplar-based
Colorization, 2018), optionally guided by colour hints (points with colours, after Zhang et al., 2017).
`colorize(target, references, method="exemplar", hints=[...])` is the entry point; methods are plugins
(see `colorize.registry`).

Importing it loads no torch: the methods that run a network (and `ChromaPrior`, loaded on first use of
its name) import it when they are created."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .api import colorize, colorize_session, colorize_with_index, session_with_index
from .base import ColorizeError, Colorizer, ColorizeResult, Reference
from .batch import FolderSummary, colorize_folder
from .chroma import ChromaColorizer, WorkingImage
from .hints import MAX_HINTS, Hint, Hints
from .prediction import ChromaPrediction, Palette
from .propagation import HintSettings
from .registry import (DEFAULT_METHOD, ENTRY_POINT_GROUP, available_methods, create_colorizer,
                       describe_methods, register_colorizer)
from .session import ColorizeSession, Suggestion
from .sheet import contact_sheet

if TYPE_CHECKING:
    from .prior import ChromaPrior

__all__ = ["DEFAULT_METHOD", "ENTRY_POINT_GROUP", "MAX_HINTS", "ChromaColorizer", "ChromaPrediction",
           "ChromaPrior", "ColorizeError", "ColorizeResult", "ColorizeSession", "Colorizer", "FolderSummary",
           "Hint", "HintSettings", "Hints", "Palette", "Reference", "Suggestion", "WorkingImage",
           "available_methods", "colorize", "colorize_folder", "colorize_session", "colorize_with_index",
           "contact_sheet", "create_colorizer", "describe_methods", "register_colorizer",
           "session_with_index"]


def __getattr__(name: str):
    if name == "ChromaPrior":
        from .prior import ChromaPrior

        return ChromaPrior
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
