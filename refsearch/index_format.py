"""The index format, in one place: the version this refsearch writes, the oldest it reads, and the steps
that bring a manifest of an older format (or an older manifest of this one) to what it reads.

Format 1 kept every image's descriptors in one file, before segments and generations; it is refused
with the command that rebuilds the index. Format 2 is segments, generations and LMDB records. Format 3
records the size and checksum of every file a generation uses (its own files by role, each segment's
in its entry). A format-2 index opens with the checks that need no record (each file is there, the
segments' arrays of the size their rows imply); its next publish records the files it writes, and
`refsearch compact`, which rewrites the segments, records them all.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from . import layout
from .errors import IndexStateError

FORMAT_VERSION = 3
OLDEST_READABLE = 2

# Build settings added after the first format-2 indexes were saved, with the values those were built with.
BUILD_SETTINGS_ADDED_IN_FORMAT_2 = {"input_size": 224, "crop": "full"}
# Manifest fields added after the first format-2 indexes were saved, with what they stand for in those.
FIELDS_ADDED_IN_FORMAT_2 = {"removed_files": 0}


def _fill_added_fields(data: dict) -> dict:
    return {**FIELDS_ADDED_IN_FORMAT_2, **data, "config": {**BUILD_SETTINGS_ADDED_IN_FORMAT_2, **data["config"]}}


def _name_files_by_role(data: dict) -> dict:
    """Format 2 named a generation's files by role only, and its projections not at all (they were
    there once images were)."""
    files = {role: {"name": name} for role, name in data["files"].items()}
    if data["dims"].get("global"):
        files["projections"] = {"name": layout.PROJECTIONS}
    return {**data, "files": files}


# (format, step): each step applies to manifests of that format or older, in order.
_STEPS: list[tuple[int, Callable[[dict], dict]]] = [
    (2, _fill_added_fields),
    (2, _name_files_by_role),
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
