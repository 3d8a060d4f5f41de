"""Colorize a grayscale photo from colour reference photos (after He et al., Deep Exemplar-based
Colorization, 2018), optionally guided by colour hints (points with colours, after Zhang et al., 2017).
`colorize(target, references, method="exemplar", hints=[...])` is the entry point; methods are plugins
(see `colorize.registry`)."""
from __future__ import annotations

from .api import colorize, colorize_session, colorize_with_index, session_with_index
from .base import ColorizeError, Colorizer, ColorizeResult, Reference
from .batch import FolderSummary, colorize_folder
from .chroma import ChromaColorizer, WorkingImage
from .hints import MAX_HINTS, Hint, Hints
from .prediction import ChromaPrediction, Palette
from .prior import ChromaPrior
from .propagation import HintSettings
from .registry import (DEFAULT_METHOD, ENTRY_POINT_GROUP, available_methods, create_colorizer,
                       describe_methods, register_colorizer)
from .session import ColorizeSession, Suggestion
from .sheet import contact_sheet

__all__ = ["DEFAULT_METHOD", "ENTRY_POINT_GROUP", "MAX_HINTS", "ChromaColorizer", "ChromaPrediction",
           "ChromaPrior", "ColorizeError", "ColorizeResult", "ColorizeSession", "Colorizer", "FolderSummary",
           "Hint", "HintSettings", "Hints", "Palette", "Reference", "Suggestion", "WorkingImage",
           "available_methods", "colorize", "colorize_folder", "colorize_session", "colorize_with_index",
           "contact_sheet", "create_colorizer", "describe_methods", "register_colorizer",
           "session_with_index"]
