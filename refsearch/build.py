"""`build-index`: a folder tree of images in, a searchable index out; resumable and incremental.

The pipeline decodes images on worker threads, runs the backbone on batches in parallel streams, and
hands each batch to the index's `IndexWriter`, which commits it. The first build of an index fits the
PCA on a sample first; the sample's raw features are kept on disk batch by batch until the fit, so an
interrupt at any point resumes from the last committed batch. The build ends by publishing a generation.
"""
from __future__ import annotations

import importlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import classes, layout
from .config import IndexConfig, SearchSettings
from .errors import IndexStateError, InvalidArgumentError
from .engines import Engine, ExtractedBatch, NetworkRequest, Unreadable, create_engine, shipped_weights
from .features import describe
from .images import ImageFile, UnusableEntry, scan_images
from .integrity import write_file
from .layout import default_index_path
from .manifest import Manifest
from .pca_sample import batch_paths, load_batch, save_batch
from .projection import Projection, Projections
from .store import ImageRecord, SkippedFile
from .writer import IndexWriter, disk_full_reported

_CELL_SAMPLES_FOR_PCA = 200_000


@dataclass(frozen=True)
class BuildSummary:
    index: str
    images: int
    added: int
    removed: int
    unchanged: int
    skipped: int  # files found unusable in this run
    skipped_total: int  # unreadable files in the index's list (files removed with `remove` are not counted)
    seconds: float
    images_per_second: float
    report: str | None
    search_kind: str
    generation: int = 0
    resumed: bool = False  # an interrupted build was finished
    up_to_date: bool = False  # nothing had changed: no generation was published
    runtime: str = ""  # what ran the network, and its version
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Plan:
    todo: list[ImageFile]
    stale_ids: list[int]
    forgotten_skips: list[str]
    unchanged: int
    new_unusable: list[UnusableEntry]  # named like images but no image files, not yet listed as skipped

    @property
    def changes_nothing(self) -> bool:
        return not (self.todo or self.stale_ids or self.forgotten_skips or self.new_unusable)


def build_index(source: str | os.PathLike, output: str | os.PathLike | None = None,
                config: IndexConfig | None = None, *, weights: str | os.PathLike | None = None,
                batch_size: int | None = None, workers: int | None = None, streams: int | None = None,
                device: str = "cpu", precision: str = "auto", runtime: str = "auto", rebuild: bool = False,
                progress: bool = True, wait: bool = False, on_wait=None, search: SearchSettings | None = None,
                engine: str = "local", engine_options: dict | None = None) -> BuildSummary:
    """Index every image under `source` into `output` (resuming or updating an existing index there).

    `workers` threads decode images (default: `default_workers`); `streams` forward passes run side by
    side (default: one per core on CPU, where each pass is single-threaded; two on a GPU); `precision`
    is what they compute in (see `refsearch.backbones.inference_settings`) and `runtime` what runs them
    (see `refsearch.network.runtime_for`: on CPU in float32, the inference runtime). Another process writing the same index
    makes this raise IndexLockedError, or, with `wait`, wait for it (`on_wait(holder)` is told who).
    `search` sets the search defaults of a new index. `engine` names where the images are decoded and
    the backbone run (see `refsearch.engines`: "local", or "ray" with `engine_options` address and
    actors); whichever it is, this process writes the index."""
    from .backbones import backbone_factory, default_batch_size, default_workers, forward_streams
    from .network import open_network

    started = time.perf_counter()
    batch_size = default_batch_size(device) if batch_size is None else batch_size
    streams = forward_streams(device) if streams is None else streams
    workers = default_workers(device) if workers is None else workers
    if batch_size < 1 or workers < 0 or streams < 1:
        raise InvalidArgumentError("batch size and streams must be at least 1, and workers at least 0")
    source = Path(source).resolve()
    output = Path(output if output is not None else default_index_path())
    scan = scan_images(source)
    files = scan.files
    config = config or IndexConfig()
    if not config.input_size and not rebuild and Manifest.exists(output):  # unspecified: as the index was built
        config = config.with_(input_size=Manifest.load(output).config.input_size)
    network = open_network(config.backbone, weights=weights, device=device, input_size=config.input_size,
                           precision=precision, runtime=runtime)
    config = config.with_(weights=network.fingerprint, input_size=network.input_size)
    if config.grid != network.grid:
        raise InvalidArgumentError(f"grid {config.grid} does not fit backbone {network.name}, whose cell "
                                   f"descriptors form a {network.grid}x{network.grid} grid",
                                   f"leave grid at {network.grid}")
    request = NetworkRequest(config.backbone, shipped_weights(weights), device, network.input_size, precision,
                             runtime, network.fingerprint, backbone_factory(config.backbone))
    extraction = create_engine(engine, network, request, config, batch_size, workers, streams, **(engine_options or {}))
    notes = [network.note] if network.note else []
    if not files:
        notes.append(f"{source} holds no image files (jpg, jpeg, png, webp, bmp, tif)")
    with IndexWriter.open(output, config=config, source=source, search=search, create=True, rebuild=rebuild, wait=wait,
                          on_wait=on_wait, command=f"build-index {source}") as writer:
        if writer.took_over is not None:
            notes.append(f"took over the lock of a writer that died ({writer.took_over.describe()})")
        resumed = writer.has_pending_build
        plan = _plan(files, writer, scan.unusable)
        up_to_date = (writer.manifest.generation > 0 and not resumed and plan.changes_nothing
                      and not len(writer.pending_removals()))
        removed = writer.remove(plan.stale_ids)
        writer.forget_skipped(plan.forgotten_skips)
        writer.mark_skipped([SkippedFile(str(u.path), u.reason, u.size, u.mtime_ns) for u in plan.new_unusable])
        pipeline = _Pipeline(writer, extraction, config)
        if not up_to_date:
            with tqdm(total=len(plan.todo), unit="img", desc="indexing", disable=not progress,
                      dynamic_ncols=True) as bar:
                pipeline.bar = bar
                pipeline.run(plan.todo)
            writer.publish()
        manifest = writer.manifest
    seconds = time.perf_counter() - started
    return BuildSummary(
        index=str(output), images=manifest.images, added=pipeline.stored, removed=len(removed),
        unchanged=plan.unchanged, skipped=pipeline.skipped + len(plan.new_unusable), skipped_total=manifest.skipped,
        seconds=round(seconds, 2), images_per_second=round(len(plan.todo) / max(pipeline.seconds, 1e-9), 1),
        report=str(output / layout.SKIPPED_REPORT) if manifest.skipped or manifest.removed_files else None,
        search_kind=manifest.search_kind(), generation=manifest.generation, resumed=resumed, up_to_date=up_to_date,
        runtime=f"{network.runtime} {network.runtime_version}", notes=notes)


def _plan(files: list[ImageFile], writer: IndexWriter, unusable: list[UnusableEntry]) -> _Plan:
    indexed = writer.file_states()
    skipped = {item.path: item for item in writer.skipped()}
    todo, stale, unchanged = [], [], 0
    current = set()
    listed_unusable = {str(u.path) for u in unusable}
    new_unusable = [u for u in unusable if (str(u.path) not in skipped
                                            or (skipped[str(u.path)].file_size, skipped[str(u.path)].mtime_ns)
                                            != (u.size, u.mtime_ns))]
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
    forgotten = [path for path in skipped if path not in current and path not in listed_unusable]
    return _Plan(todo, stale, forgotten, unchanged, new_unusable)


class _Pipeline:
    """Has the engine extract the files' features, projects them, and hands each batch to the writer."""

    def __init__(self, writer: IndexWriter, engine: Engine, config: IndexConfig):
        self.writer, self.engine, self.config = writer, engine, config
        self.skipped = 0
        self.stored = 0
        self.seconds = 0.0
        self.bar: tqdm | None = None
        self.sample_dir = writer.path / layout.PCA_SAMPLE

    def run(self, todo: list[ImageFile]) -> None:
        started = time.perf_counter()
        if self.writer.projections is None and todo:
            with disk_full_reported(self.writer.path):  # the sample's files are the pipeline's own
                todo = self._fit_on_sample(todo)
        if self.sample_dir.is_dir():
            sampled = self._store_sample()
            todo = [f for f in todo if str(f.path) not in sampled]
        for batch in self._extracted(todo):
            self._store(batch)
        self.seconds = time.perf_counter() - started

    def _sample_batches(self) -> list[Path]:
        return sorted(self.sample_dir.glob("*.npz")) if self.sample_dir.is_dir() else []

    def _fit_on_sample(self, todo: list[ImageFile]) -> list[ImageFile]:
        """Extract the PCA sample (keeping each batch on disk), fit and save the projections; returns
        the files left to do."""
        # scikit-learn takes most of a second to import; do it while the sample is extracted.
        threading.Thread(target=importlib.import_module, args=("sklearn.decomposition",), daemon=True).start()
        self.sample_dir.mkdir(exist_ok=True)
        chosen = self.sample_dir / "sample.txt"
        # Resuming with sample batches kept: the same sample. With none kept, nothing depends on the
        # choice, and choosing again leaves out files found unreadable meanwhile.
        if chosen.exists() and self._sample_batches():
            names = set(chosen.read_text().splitlines())
        else:
            rows = np.linspace(0, len(todo) - 1, min(len(todo), self.config.pca_images), dtype=np.int64)
            names = {str(todo[i].path) for i in rows.tolist()}
            write_file(chosen, "".join(f"{name}\n" for name in sorted(names)).encode())
        sample = [f for f in todo if str(f.path) in names]
        rest = [f for f in todo if str(f.path) not in names]
        done = {name for path in self._sample_batches() for name in batch_paths(path)}
        self._advance(len([f for f in sample if str(f.path) in done]))
        remaining = [f for f in sample if str(f.path) not in done]
        number = len(self._sample_batches())
        for batch in self._extracted(remaining):
            save_batch(batch, self.sample_dir / f"{number:08d}.npz")
            number += 1
        batches = self._sample_batches()
        if not batches:
            if not rest:
                return []
            raise IndexStateError("none of the sampled images could be read, so the PCA cannot be fitted")
        self.writer.set_projections(self._fit(batches))
        return rest

    def _fit(self, batches: list[Path]) -> Projections:
        loaded = [load_batch(path).raw for path in batches]
        global_ = np.concatenate([raw.global_ for raw in loaded])
        total_cells = sum(raw.cells.shape[0] * raw.cells.shape[1] for raw in loaded)
        keep = min(1.0, _CELL_SAMPLES_FOR_PCA / max(total_cells, 1))
        rng = np.random.default_rng(0)
        cell_parts = []
        for raw in loaded:
            cells = raw.cells.reshape(-1, raw.cells.shape[-1])
            cell_parts.append(cells if keep == 1.0 else cells[rng.random(len(cells)) < keep])
        return Projections(Projection.fit(global_, self.config.global_dim),
                           Projection.fit(np.concatenate(cell_parts), self.config.cell_dim), fitted_on=len(global_))

    def _store_sample(self) -> set[str]:
        """Store the kept sample batches (each deleted once committed); returns their paths."""
        paths: set[str] = set()
        indexed = self.writer.file_states()  # batches are disjoint: one look before storing them suffices
        for path in self._sample_batches():
            batch = load_batch(path)
            if not all(str(f.path) in indexed for f in batch.files):
                self._store(batch)
            paths.update(str(f.path) for f in batch.files)
            path.unlink()
        (self.sample_dir / "sample.txt").unlink(missing_ok=True)
        self.sample_dir.rmdir()
        return paths

    def _extracted(self, files: list[ImageFile]) -> Iterator[ExtractedBatch]:
        for item in self.engine.extract(files):
            if isinstance(item, Unreadable):
                self.skipped += 1
                self.writer.mark_skipped([SkippedFile(str(item.file.path), item.error.reason, item.file.size,
                                                      item.file.mtime_ns)])
                self._advance(1)
                continue
            self._advance(len(item.files))
            yield item

    def _store(self, batch: ExtractedBatch) -> None:
        descriptors = describe(batch.raw, self.writer.projections)
        first_id = self.writer.next_id
        wnids = classes.wnids()
        records = []
        for row, (file, (width, height), digest) in enumerate(zip(batch.files, batch.sizes, batch.digests)):
            predicted = int(descriptors.probabilities[row].argmax())
            given = classes.label_from_path(file.path)
            source = "predicted" if given is None else ("folder" if file.path.parent.name == given else "filename")
            records.append(ImageRecord(
                id=first_id + row, path=str(file.path), label=given or wnids[predicted], label_source=source,
                prediction=wnids[predicted], confidence=round(float(descriptors.probabilities[row, predicted]), 4),
                width=int(width), height=int(height), digest=digest, file_size=file.size, mtime_ns=file.mtime_ns))
        self.writer.add(records, descriptors.global_, descriptors.cells, descriptors.histograms)
        self.stored += len(records)

    def _advance(self, count: int) -> None:
        if self.bar is not None:
            self.bar.update(count)
            if self.skipped:
                self.bar.set_postfix(skipped=self.skipped, refresh=False)


__all__ = ["BuildSummary", "build_index"]
