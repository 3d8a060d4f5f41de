"""The PCA sample's batches on disk: the raw features of the images a first build fits its projections
on, kept batch by batch in `INDEX/pca-sample/` until the fit, so that an interrupted build resumes the
sample and stores exactly what an uninterrupted one would."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .engines import ExtractedBatch
from .features import RawFeatures
from .images import ImageFile
from .integrity import write_file


def save_batch(batch: ExtractedBatch, path: Path) -> None:
    """Write a batch atomically: a partial file is never left under `path`, nor under a name that a
    resumed build would take for a batch."""
    buffer = io.BytesIO()
    np.savez(buffer, paths=np.array([str(f.path) for f in batch.files]),
             file_sizes=np.array([f.size for f in batch.files], np.int64),
             mtimes=np.array([f.mtime_ns for f in batch.files], np.int64),
             sizes=np.array(batch.sizes, np.int64).reshape(-1, 2), digests=np.array(batch.digests),
             logits=batch.raw.logits, global_=batch.raw.global_.astype(np.float16),
             cells=batch.raw.cells.astype(np.float16), histograms=batch.raw.histograms)
    write_file(path, buffer.getbuffer())


def batch_paths(path: Path) -> list[str]:
    """The files a saved batch holds, without reading its features."""
    with np.load(path) as data:
        return [str(p) for p in data["paths"]]


def load_batch(path: Path) -> ExtractedBatch:
    with np.load(path) as data:
        files = [ImageFile(Path(p), int(s), int(m)) for p, s, m in
                 zip(data["paths"], data["file_sizes"], data["mtimes"])]
        raw = RawFeatures(data["logits"], data["global_"].astype(np.float32), data["cells"].astype(np.float32),
                          data["histograms"])
        return ExtractedBatch(files, [tuple(s) for s in data["sizes"].tolist()], [str(d) for d in data["digests"]],
                              raw)
