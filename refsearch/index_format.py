"""The index format, in one place: the version this refsearch writes, the oldest it reads, and the steps
that bring a manifest of an older format (or an older manifest of this one) to what it reads.

Format 1 kept every image's descriptors in one file, before segments and generations; it is refused
with the command that rebuilds the index. Format 2 is segments, generations and LMDB records.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .errors import IndexStateError

FORMAT_VERSION = 2
OLDEST_READABLE = 2

# Build settings added after the first format-2 indexes were saved, with the values those were built with.
BUILD_SETTINGS_ADDED_IN_FORMAT_2 = {"input_size": 224, "crop": "full"}
# Manifest fields added after the first format-2 indexes were saved, with what they stand for in those.
FIELDS_ADDED_IN_FORMAT_2 = {"removed_files": 0}


def _fill_added_fields(data: dict) -> dict:
    return {**FIELDS_ADDED_IN_FORMAT_2, **data, "config": {**BUILD_SETTINGS_ADDED_IN_FORMAT_2, **data["config"]}}


# (format, step): each step applies to manifests of that format or older, in order.
_STEPS: list[tuple[int, Callable[[dict], dict]]] = [
    (2, _fill_added_fields),
]


def upgraded(data: dict, folder: Path) -> dict:
    """The manifest `data` of the index at `folder`, brought to the current format; IndexStateError
    naming the command that rebuilds it when its format is one this refsearch cannot read."""
    version = data.get("format_version")
    if not isinstance(version, int) or not OLDEST_READABLE <= version <= FORMAT_VERSION:
        source = data.get("source", "PHOTOS")
        raise IndexStateError(
            f"{folder} has index format {version}, and this refsearch reads format {FORMAT_VERSION}",
            f"rebuild it: `refsearch build-index {source} -o {folder} --rebuild`")
    for step_format, step in _STEPS:
        if version <= step_format:
            data = step(data)
    return {**data, "format_version": FORMAT_VERSION}
