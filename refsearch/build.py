"""`build-index`: a folder tree of images in, a searchable index out; resumable and incremental.

A build first marks the manifest "building", then writes records in LMDB transactions batch by batch,
and only at the end writes the FAISS files and marks the manifest "complete". An interrupted build
therefore leaves an index that refuses to load until the same command is run again, which finishes it.
"""
from __future__ import annotations

import importlib
import os
import shutil
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from . import classes
from .backbones import Backbone, create_backbone, forward_streams
from .config import ConfigMismatchError, IndexConfig
from .features import PreparedImage, RawFeatures, describe, extract, load_prepared
from .images import ImageError, ImageFile, find_images
from .manifest import IndexStateError, Manifest
from .projection import Projection, Projections
from .store import ImageRecord, RecordStore, SkippedFile
from .vector_index import GlobalIndex

RECORDS_NAME = "records.lmdb"
PROJECTIONS_NAME = "projections.npz"
SKIPPED_REPORT_NAME = "skipped.tsv"
DEFAULT_INDEX = "refsearch.index"
_CELL_SAMPLES_FOR_PCA = 200_000


@dataclass(frozen=True)
class BuildSummary:
    index: str
    images: int
    added: int
    removed: int
    unchanged: int
    skipped: int  # files found unusable in this run
    skipped_total: int
    seconds: float
    images_per_second: float
    report: str | None
    search_kind: str


@dataclass(frozen=True)
class _Plan:
    todo: list[ImageFile]
    stale_ids: list[int]
    forgotten_skips: list[str]
    unchanged: int


def default_index_path() -> Path:
    return Path(os.environ.get("REFSEARCH_INDEX", DEFAULT_INDEX))


def default_batch_size(device: str) -> int:
    # On a 2-core CPU this depthwise network runs fastest at small batches (see docs/benchmarks.md).
    return 4 if device == "cpu" else 64


def build_index(source: str | os.PathLike, output: str | os.PathLike | None = None,
                config: IndexConfig | None = None, *, weights: str | os.PathLike | None = None,
                batch_size: int | None = None, workers: int = 2, streams: int | None = None,
                device: str = "cpu", rebuild: bool = False, progress: bool = True) -> BuildSummary:
    """Index every image under `source` into `output` (resuming or updating an existing index there).

    `workers` threads decode images; `streams` forward passes run side by side (default: one per core
    on CPU, where each pass is single-threaded; one on a GPU)."""
    started = time.perf_counter()
    source = Path(source).resolve()
    output = Path(output if output is not None else default_index_path())
    files = find_images(source)
    backbone = create_backbone((config or IndexConfig()).backbone, weights=weights, device=device)
    config = (config or IndexConfig()).with_(weights=backbone.fingerprint)
    batch_size = default_batch_size(device) if batch_size is None else batch_size
    streams = forward_streams(device) if streams is None else streams
    if batch_size < 1 or workers < 0 or streams < 1:
        raise ValueError("batch size and streams must be at least 1, and workers at least 0")

    manifest = _start(output, config, source, rebuild)
    store = RecordStore(output / RECORDS_NAME, write=True)
    try:
        plan = _plan(files, store)
        removed = store.delete(plan.stale_ids)
        store.forget_skipped(plan.forgotten_skips)
        writer = _Writer(store, backbone, config, batch_size, workers, streams)
        with tqdm(total=len(plan.todo), unit="img", desc="indexing", disable=not progress,
                  dynamic_ncols=True) as bar:
            writer.bar = bar
            writer.run(plan.todo, output / PROJECTIONS_NAME)
        finalize(output, manifest, store)
    finally:
        store.close()
    seconds = time.perf_counter() - started
    processed = len(plan.todo) - writer.skipped
    return BuildSummary(
        index=str(output), images=manifest.images, added=processed, removed=removed,
        unchanged=plan.unchanged, skipped=writer.skipped, skipped_total=manifest.skipped,
        seconds=round(seconds, 2), images_per_second=round(len(plan.todo) / max(writer.seconds, 1e-9), 1),
        report=str(output / SKIPPED_REPORT_NAME) if manifest.skipped else None,
        search_kind=manifest.search_kind)


def _start(output: Path, config: IndexConfig, source: Path, rebuild: bool) -> Manifest:
    if Manifest.exists(output):
        if rebuild:
            shutil.rmtree(output)
        else:
            manifest = Manifest.load(output)
            differences = manifest.config.build_differences(config)
            if differences:
                raise ConfigMismatchError(
                    f"{output} was built with another configuration ({'; '.join(differences)}); "
                    "pass --rebuild to rebuild it, or choose another output")
            if manifest.source != str(source):
                raise ConfigMismatchError(
                    f"{output} indexes {manifest.source}, not {source}; pass --rebuild to replace it, "
                    "or choose another output")
            manifest.config = config.with_(**{k: getattr(manifest.config, k) for k in
                                              ("global_candidates", "luminance_weight", "widen_classes")})
            manifest.state = "building"
            manifest.save(output)
            return manifest
    elif output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise IndexStateError(f"{output} exists and is not a refsearch index; choose another output")
    output.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(config=config, source=str(source))
    manifest.save(output)
    return manifest


def _plan(files: list[ImageFile], store: RecordStore) -> _Plan:
    indexed = store.file_states()
    skipped = {item.path: item for item in store.skipped()}
    todo, stale, unchanged = [], [], 0
    current = set()
    for file in files:
        key = str(file.path)
        current.add(key)
        state = indexed.get(key)
        if state is not None and (state.file_size, state.mtime_ns) == (file.size, file.mtime_ns):
            unchanged += 1
            continue
        if state is not None:
            stale.append(state.id)
        known_bad = skipped.get(key)
        if known_bad is not None and (known_bad.file_size, known_bad.mtime_ns) == (file.size, file.mtime_ns):
            continue
        todo.append(file)
    stale.extend(state.id for path, state in indexed.items() if path not in current)
    forgotten = [path for path in skipped if path not in current]
    return _Plan(todo, stale, forgotten, unchanged)


def _safe_prepare(file: ImageFile, config: IndexConfig, input_size: int) -> PreparedImage | ImageError:
    try:
        return load_prepared(file.path, config, input_size)
    except ImageError as error:
        return error
    except Exception as exc:  # a decoder bug on one file must not stop a million-image build
        return ImageError(file.path, f"cannot decode ({type(exc).__name__}: {exc})")


class _Writer:
    """Decodes on worker threads, runs the backbone on batches in `streams` threads, projects and stores."""

    def __init__(self, store: RecordStore, backbone: Backbone, config: IndexConfig, batch_size: int,
                 workers: int, streams: int):
        self.store, self.backbone, self.config = store, backbone, config
        self.batch_size, self.workers, self.streams = batch_size, workers, streams
        self.skipped = 0
        self.seconds = 0.0
        self.bar: tqdm | None = None

    def run(self, todo: list[ImageFile], projections_path: Path) -> None:
        started = time.perf_counter()
        if projections_path.exists():
            projections = Projections.load(projections_path)
        else:
            # scikit-learn takes most of a second to import; do it while the PCA sample is extracted
            # rather than while the network waits for the fit.
            threading.Thread(target=importlib.import_module, args=("sklearn.decomposition",),
                             daemon=True).start()
            sample_rows = set(np.linspace(0, len(todo) - 1, min(len(todo), self.config.pca_images),
                                          dtype=np.int64).tolist()) if todo else set()
            sample = [f for i, f in enumerate(todo) if i in sample_rows]
            todo = [f for i, f in enumerate(todo) if i not in sample_rows]
            held = list(self._extracted(sample))
            if held:
                projections = self._fit(held)
                _save_projections(projections, projections_path)
                for files, prepared, raw in held:
                    self._store(files, prepared, raw, projections)
            elif not todo:
                self.seconds = time.perf_counter() - started
                return
            else:
                raise IndexStateError("none of the sampled images could be read, so the PCA cannot be fitted")
        for files, prepared, raw in self._extracted(todo):
            self._store(files, prepared, raw, projections)
        self.seconds = time.perf_counter() - started

    def _extracted(self, files: list[ImageFile]) -> Iterator[tuple[list[ImageFile], list[PreparedImage], RawFeatures]]:
        """Batches in file order with their features; up to `streams` batches are in the network at once."""
        with ThreadPoolExecutor(self.streams) as pool:
            running: deque = deque()
            for batch_files, images in self._batches(files):
                running.append((batch_files, images, pool.submit(extract, self.backbone, images)))
                if len(running) >= self.streams:
                    yield self._finished(running.popleft())
            while running:
                yield self._finished(running.popleft())

    def _finished(self, item: tuple) -> tuple[list[ImageFile], list[PreparedImage], RawFeatures]:
        files, images, future = item
        raw = future.result()
        self._advance(len(images))
        return files, images, raw

    def _batches(self, files: list[ImageFile]) -> Iterator[tuple[list[ImageFile], list[PreparedImage]]]:
        batch_files, batch_images = [], []
        for file, result in self._prepared_stream(files):
            if isinstance(result, ImageError):
                self.skipped += 1
                self.store.mark_skipped([SkippedFile(str(file.path), result.reason, file.size, file.mtime_ns)])
                self._advance(1)
                continue
            batch_files.append(file)
            batch_images.append(result)
            if len(batch_images) == self.batch_size:
                yield batch_files, batch_images
                batch_files, batch_images = [], []
        if batch_images:
            yield batch_files, batch_images

    def _prepared_stream(self, files: list[ImageFile]) -> Iterator[tuple[ImageFile, PreparedImage | ImageError]]:
        size = self.backbone.input_size
        if self.workers == 0:
            for file in files:
                yield file, _safe_prepare(file, self.config, size)
            return
        window = 4 * max(self.batch_size, self.workers)
        with ThreadPoolExecutor(self.workers) as pool:
            pending: deque = deque()
            remaining = iter(files)
            for file in remaining:
                pending.append((file, pool.submit(_safe_prepare, file, self.config, size)))
                if len(pending) >= window:
                    break
            while pending:
                file, future = pending.popleft()
                following = next(remaining, None)
                if following is not None:
                    pending.append((following, pool.submit(_safe_prepare, following, self.config, size)))
                yield file, future.result()

    def _fit(self, held: list[tuple[list[ImageFile], list[PreparedImage], RawFeatures]]) -> Projections:
        raw = RawFeatures.concatenate([r for _, _, r in held])
        cells = raw.cells.reshape(-1, raw.cells.shape[-1])
        if len(cells) > _CELL_SAMPLES_FOR_PCA:
            cells = cells[np.random.default_rng(0).choice(len(cells), _CELL_SAMPLES_FOR_PCA, replace=False)]
        return Projections(Projection.fit(raw.global_, self.config.global_dim),
                           Projection.fit(cells, self.config.cell_dim), fitted_on=len(raw))

    def _store(self, files: list[ImageFile], prepared: list[PreparedImage], raw: RawFeatures,
               projections: Projections) -> None:
        descriptors = describe(raw, projections)
        first_id = self.store.reserve_ids(len(files))
        wnids = classes.wnids()
        records = []
        for row, (file, image) in enumerate(zip(files, prepared)):
            predicted = int(descriptors.probabilities[row].argmax())
            given = classes.label_from_path(file.path)
            source = "predicted" if given is None else ("folder" if file.path.parent.name == given else "filename")
            records.append(ImageRecord(
                id=first_id + row, path=str(file.path), label=given or wnids[predicted], label_source=source,
                prediction=wnids[predicted], confidence=round(float(descriptors.probabilities[row, predicted]), 4),
                width=image.original_size[0], height=image.original_size[1], digest=image.digest or "",
                file_size=file.size, mtime_ns=file.mtime_ns))
        self.store.add(records, descriptors.global_, descriptors.cells, descriptors.histograms)

    def _advance(self, count: int) -> None:
        if self.bar is not None:
            self.bar.update(count)
            if self.skipped:
                self.bar.set_postfix(skipped=self.skipped, refresh=False)


def _save_projections(projections: Projections, path: Path) -> None:
    temporary = path.with_name(path.name + ".tmp")
    projections.save(temporary)
    os.replace(temporary, path)


def remove_images(index: str | os.PathLike, ids: list[int]) -> int:
    """Remove images from an index by id. Their files are remembered as removed (in skipped.tsv), so a
    later incremental build does not add them back unless they change. Returns how many were removed."""
    index = Path(index)
    manifest = Manifest.load(index)
    if manifest.state != "complete":
        raise IndexStateError(f"{index} holds an unfinished build; finish it with `refsearch build-index` first")
    store = RecordStore(index / RECORDS_NAME, write=True)
    try:
        records = store.get_many(sorted(set(int(i) for i in ids)))
        manifest.state = "building"
        manifest.save(index)
        removed = store.delete(r.id for r in records)
        store.mark_skipped([SkippedFile(r.path, "removed from the index", r.file_size, r.mtime_ns) for r in records])
        finalize(index, manifest, store)
    finally:
        store.close()
    return removed


def finalize(output: Path, manifest: Manifest, store: RecordStore) -> None:
    """Rebuild the FAISS files and the skipped report from the record store, then mark the index complete."""
    config = manifest.config
    projections_path = output / PROJECTIONS_NAME
    projections = Projections.load(projections_path) if projections_path.exists() else None
    dim = projections.global_.output_dim if projections else 1
    ids, vectors = store.global_vectors(dim)
    class_of = {record.id: classes.class_index(record.label) for record in store.records()}
    labels = np.array([class_of[i] for i in ids.tolist()], np.int64)
    index = GlobalIndex.build(ids, vectors, labels, classes.num_classes(), config.exact_all_class_limit,
                              config.ivf_nprobe)
    generation = manifest.generation + 1
    old_files = set(manifest.files.values())
    files = index.save(output, generation)
    skipped = store.skipped()
    _write_skipped_report(output / SKIPPED_REPORT_NAME, skipped)
    manifest.files = files
    manifest.generation = generation
    manifest.images = len(ids)
    manifest.skipped = len(skipped)
    manifest.classes = int(np.count_nonzero(index.class_sizes()))
    manifest.dims = {"global": dim, "cell": projections.cells.output_dim if projections else 0,
                     "fitted_on": projections.fitted_on if projections else 0}
    manifest.search_kind = index.kind
    manifest.state = "complete"
    manifest.save(output)
    for name in old_files - set(files.values()) - {None}:
        (output / name).unlink(missing_ok=True)


def _write_skipped_report(path: Path, skipped: list[SkippedFile]) -> None:
    if not skipped:
        path.unlink(missing_ok=True)
        return
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w") as handle:
        handle.write("path\treason\n")
        for item in sorted(skipped, key=lambda s: s.path):
            handle.write(f"{item.path}\t{item.reason}\n")
    os.replace(temporary, path)
