"""The Ray engine: a Ray Data pipeline over the build's files. Decoding and histograms run as CPU tasks;
the backbone runs in a pool of actors, each loading the network once (one GPU an actor where the cluster
has GPUs). Ray Data streams the blocks with back-pressure, so a build holds a bounded number of decoded
images however many files it has; a task or actor that dies is retried by Ray. The build's process
receives the features in file order and stores them through its one `IndexWriter`, batch by batch, so
the index is the local engine's, and a stopped build resumes from its last committed batch.

The workers must see the images at the paths the build names (one machine, or a shared file system).
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..config import IndexConfig
from ..errors import InvalidArgumentError
from ..features import PreparedImage, RawFeatures, extract
from ..images import ImageError, ImageFile
from .base import BackboneRequest, ExtractedBatch, Unreadable, prepare_safely

# A decode task takes a quarter of a core and, on a CPU cluster, each actor the rest of one, so that
# decoding runs beside the forward passes as the local engine's threads do rather than waiting for a
# whole free core.
_DECODE_CPUS = 0.25
_CPU_ACTOR_CPUS = 1 - _DECODE_CPUS
# Files a Ray Data block holds: each block is one decode task and one round trip to an actor, so blocks
# of a few batches keep Ray's scheduling small against the work, and many blocks keep every actor busy.
_BLOCK_FILES = 64


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise InvalidArgumentError("the ray engine needs Ray Data, which is not installed",
                                   "pip install 'refsearch[ray]'") from None
    return ray


class RayEngine:
    def __init__(self, request: BackboneRequest, config: IndexConfig, batch_size: int, *,
                 address: str | None = None, actors: int | None = None):
        if actors is not None and actors < 1:
            raise InvalidArgumentError(f"{actors} actors: at least one is needed")
        self.ray = _import_ray()  # refused before the build starts when Ray is missing
        self.request, self.config, self.batch_size = request, config, batch_size
        self.address, self.actors = address, actors

    def extract(self, files: list[ImageFile]) -> Iterator[ExtractedBatch | Unreadable]:
        if not files:
            return
        with _connected(self.ray, self.address):
            yield from self._run(self.ray, files)

    def _run(self, ray, files: list[ImageFile]) -> Iterator[ExtractedBatch | Unreadable]:
        on_gpu = self.request.device != "cpu"
        resources = ray.cluster_resources()
        if on_gpu and resources.get("GPU", 0) < 1:
            raise InvalidArgumentError(f"--device {self.request.device} asked for, but the Ray cluster has no GPU",
                                       "use --device cpu, or a cluster with GPU nodes")
        default_actors = int(resources.get("GPU", 0)) if on_gpu else max(1, int(resources.get("CPU", 1)))
        actors = self.actors or default_actors
        items = [{"path": str(f.path), "size": f.size, "mtime": f.mtime_ns} for f in files]
        blocks = max(1, -(-len(items) // max(_BLOCK_FILES, self.batch_size)))
        with _build_settings(ray):
            dataset = ray.data.from_items(items, override_num_blocks=blocks)
            dataset = dataset.map_batches(_decode, fn_kwargs={"config": self.config, "size": self.request.input_size},
                                          batch_size=None, batch_format="numpy", num_cpus=_DECODE_CPUS)
            dataset = dataset.map_batches(_Forward, fn_constructor_kwargs={"request": self.request},
                                          batch_size=self.batch_size, batch_format="numpy",
                                          compute=ray.data.ActorPoolStrategy(size=actors),
                                          num_gpus=1 if on_gpu else 0, num_cpus=1 if on_gpu else _CPU_ACTOR_CPUS)
            for block in dataset.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2):
                yield from _unpack(block, self.batch_size)


@contextlib.contextmanager
def _build_settings(ray):
    """Ray Data set for a build, and as it was afterwards: rows in file order (ids as the local engine
    gives them), no progress bars or log lines of its own, which would break into the build's bar."""
    context = ray.data.DataContext.get_current()
    data_logger = logging.getLogger("ray.data")
    saved = (context.execution_options.preserve_order, context.enable_progress_bars,
             context.print_on_execution_start, data_logger.level)
    context.execution_options.preserve_order = True
    context.enable_progress_bars = context.print_on_execution_start = False
    data_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        (context.execution_options.preserve_order, context.enable_progress_bars,
         context.print_on_execution_start) = saved[:3]
        data_logger.setLevel(saved[3])


@contextlib.contextmanager
def _connected(ray, address: str | None):
    """Ray as the caller left it: joined if already initialised here, else started (or, with `address` or
    RAY_ADDRESS, connected) for the build and shut down after it."""
    if ray.is_initialized():
        yield
        return
    ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


def _decode(batch: dict, config: IndexConfig, size: int) -> dict:
    count = len(batch["path"])
    pixels = np.zeros((count, size, size), np.uint8)
    histograms = np.zeros((count, config.grid * config.grid, config.hist_bins), np.float32)
    sizes = np.zeros((count, 2), np.int64)
    digests, errors = [""] * count, [""] * count
    for row, (path, file_size, mtime) in enumerate(zip(batch["path"], batch["size"], batch["mtime"])):
        prepared = prepare_safely(ImageFile(Path(path), int(file_size), int(mtime)), config, size)
        if isinstance(prepared, ImageError):
            errors[row] = prepared.reason
            continue
        pixels[row], histograms[row] = prepared.network_input, prepared.histograms
        sizes[row] = prepared.original_size
        digests[row] = prepared.digest or ""
    return {**batch, "pixels": pixels, "histograms": histograms, "original_size": sizes,
            "digest": np.array(digests), "error": np.array(errors)}


class _Forward:
    """One actor: the backbone loaded once, run on every batch it is given."""

    def __init__(self, request: BackboneRequest):
        self.backbone = request.create()

    def __call__(self, batch: dict) -> dict:
        readable = np.flatnonzero(batch["error"] == "")
        count, backbone = len(batch["path"]), self.backbone
        # unreadable rows get zeros: every block has the same columns, and the build never reads those rows
        logits = np.zeros((count, 1000), np.float32)
        global_ = np.zeros((count, backbone.global_dim), np.float32)
        cells = np.zeros((count, backbone.grid * backbone.grid, backbone.cell_dim), np.float32)
        if len(readable):
            images = [PreparedImage(batch["pixels"][row], batch["histograms"][row], (0, 0), None) for row in readable]
            found = extract(backbone, images)
            logits[readable], global_[readable], cells[readable] = found.logits, found.global_, found.cells
        kept = {name: batch[name] for name in ("path", "size", "mtime", "original_size", "digest", "error", "histograms")}
        return {**kept, "logits": logits, "global": global_, "cells": cells}


def _unpack(block: dict, batch_size: int) -> Iterator[ExtractedBatch | Unreadable]:
    files = [ImageFile(Path(str(p)), int(s), int(m)) for p, s, m in zip(block["path"], block["size"], block["mtime"])]
    readable = []
    for row, (file, error) in enumerate(zip(files, block["error"])):
        if error:
            yield Unreadable(file, ImageError(file.path, str(error)))
        else:
            readable.append(row)
    for start in range(0, len(readable), batch_size):
        rows = np.array(readable[start:start + batch_size])
        raw = RawFeatures(block["logits"][rows], block["global"][rows], block["cells"][rows], block["histograms"][rows])
        yield ExtractedBatch([files[row] for row in rows], [tuple(size) for size in block["original_size"][rows].tolist()],
                             [str(block["digest"][row]) for row in rows], raw)
