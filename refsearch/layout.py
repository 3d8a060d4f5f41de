"""The index folder's file names, in one place: the writer creates them and the reader opens them.

```
INDEX/manifest.json                 the published generation: settings, segments, counts, its files
                                    with their sizes and checksums
INDEX/writer.lock                   held by the one process writing (pid, host, since)
INDEX/metadata.lmdb/                per-image records, path and content maps, skipped files, pending work
    data.mdb                            LMDB's data file (changed by every write, so not checksummed)
    lock.mdb                            LMDB's lock file: the writer's mutex and the readers' table
INDEX/projections.npz               PCA mean and components (global, cells)
INDEX/segments/<name>/              fixed-width arrays of one batch of images, memory-mapped:
    cells.f16                           cell descriptors (rows, cells, cell_dim) float16
    hist.u16                            cell luminance histograms (rows, cells, bins), scaled counts
    global.f32                          global descriptors, only until the segment is published
    global.faiss                        the same, as a class-partitioned inverted file (the one copy)
    ids.i64                             the rows' ids, only where they are not one contiguous run
INDEX/classes.<generation>.npy      per-class sums and counts of the global descriptors
INDEX/tombstones.<generation>.npy   removed ids whose rows are still in segments
INDEX/pca-sample/                   the PCA sample's raw features while a first build fits the PCA
INDEX/skipped.tsv                   unreadable files and why
```
"""
from __future__ import annotations

import os
from pathlib import Path

# The index a command uses when none is named (overridden by $REFSEARCH_INDEX).
DEFAULT_INDEX = "refsearch.index"
MANIFEST = "manifest.json"
LOCK = "writer.lock"
METADATA = "metadata.lmdb"
DATA_MDB = "data.mdb"
LOCK_MDB = "lock.mdb"
PROJECTIONS = "projections.npz"
SEGMENTS = "segments"
PCA_SAMPLE = "pca-sample"
SKIPPED_REPORT = "skipped.tsv"

CELLS = "cells.f16"
HISTOGRAMS = "hist.u16"
GLOBAL_RAW = "global.f32"
GLOBAL_FAISS = "global.faiss"
IDS = "ids.i64"


def class_stats(generation: int) -> str:
    return f"classes.{generation}.npy"


def tombstones(generation: int) -> str:
    return f"tombstones.{generation}.npy"


def segment_dir(index: Path, name: str) -> Path:
    return Path(index) / SEGMENTS / name


def index_of(path: Path) -> Path:
    """The index folder that a file of it (any named above) lies in."""
    path = Path(path)
    if path.parent.name == METADATA:
        return path.parent.parent
    if path.parent.parent.name == SEGMENTS:
        return path.parents[2]
    return path.parent


def default_index_path() -> Path:
    return Path(os.environ.get("REFSEARCH_INDEX", DEFAULT_INDEX))
