"""What an index folder is doing, for `info` and for people: its published generation, whether a
writer holds it now, and whether an interrupted build waits to be finished. Its files are checked as
opening the index checks them (a stat each, and the checksums of those read whole), so a damaged
index is reported, not described."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from . import layout
from .lock import writer_at_work
from .manifest import Manifest
from .store import MetadataReader


@dataclass(frozen=True)
class IndexStatus:
    path: Path
    manifest: Manifest
    writer: str | None  # who writes the index now
    pending: bool  # a writer left work that is not yet published


def index_status(path: str | os.PathLike) -> IndexStatus:
    path = Path(path)
    manifest = Manifest.load(path)
    manifest.check_files(path, whole=True)
    writer = writer_at_work(path)
    metadata = MetadataReader(path / layout.METADATA, Path(manifest.source), manifest.generation)
    try:
        pending = metadata.info("pending")
    finally:
        metadata.close()
    waiting = bool(pending) and pending["generation"] > manifest.generation and (
        any(s["rows"] for s in pending["segments"]) or (path / layout.PCA_SAMPLE).is_dir())
    return IndexStatus(path, manifest, writer, waiting and writer is None)
