"""The Ray engines: Ray Data pipelines over a build's files or a batch query's photos. Decoding and
histograms run as CPU tasks; the backbone runs in a pool of actors, each loading the network once (one
GPU an actor where the cluster has GPUs). Ray Data streams the blocks with back-pressure, so a run holds
a bounded number of decoded images however many files it has; a task or actor that dies is retried by Ray.

A build's process receives the features in file order and stores them through its one `IndexWriter`,
batch by batch, so the index is the local engine's, and a stopped build resumes from its last committed
batch. A batch query's actors each open the index too, refusing a generation other than the one the
query opened, and answer whole batches; the query's process receives the lines in photo order and writes
them. An error an actor meets that the user can fix (weights or an index its worker cannot see, a search
the options refuse) is raised in the run's process as the local engine would raise it.

The workers must see the images, and the index of a query, at the paths given (one machine, or a shared
file system).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..config import IndexConfig
from ..errors import USER_FILE_ERRORS, InvalidArgumentError, RefsearchError
from ..features import PreparedImage, RawFeatures, extract
from ..images import ImageError, ImageFile, max_pixels, pixel_limit
from ..request import SearchRequest
from .answers import answer_lines
from .decoding import prepare_safely
from .protocol import ExtractedBatch, Unreadable
from .requests import IndexRequest, NetworkRequest

# A decode task takes a quarter of a core and, on a CPU cluster, each actor the rest of one, so that
# decoding runs beside the forward passes as the local engine's threads do rather than waiting for a
# whole free core.
_DECODE_CPUS = 0.25
_CPU_ACTOR_CPUS = 1 - _DECODE_CPUS
# Files a Ray Data block holds: each block is one decode task and one round trip to an actor, so blocks
# of a few batches keep Ray's scheduling small against the work, and many blocks keep every actor busy.
_BLOCK_FILES = 64
# What an actor returns as data rather than raising (see _Actor).
USER_ERRORS = (RefsearchError, *USER_FILE_ERRORS)


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise InvalidArgumentError("the ray engine needs Ray Data, which is not installed",
                                   "pip install 'refsearch[ray]'") from None
    return ray


class _RayRun:
    """What both engines share: the cluster to join, the actors to start, and Ray connected for a run."""

    def __init__(self, address: str | None, actors: int | None):
        if actors is not None and actors < 1:
            raise InvalidArgumentError(f"{actors} actors: at least one is needed")
        self.ray = _import_ray()  # refused before the run starts when Ray is missing
        self.address, self.actors = address, actors

    def _streamed(self, items: list) -> Iterator:
        if not items:
            return
        with _connected(self.ray, self.address):
            yield from self._run(self.ray, items)  # each engine's own pipeline


class RayEngine(_RayRun):
    def __init__(self, request: NetworkRequest, config: IndexConfig, batch_size: int, *,
                 address: str | None = None, actors: int | None = None):
        super().__init__(address, actors)
        self.request, self.config, self.batch_size = request, config, batch_size

    def extract(self, files: list[ImageFile]) -> Iterator[ExtractedBatch | Unreadable]:
        return self._streamed(files)

    def _run(self, ray, files: list[ImageFile]) -> Iterator[ExtractedBatch | Unreadable]:
        items = [{"path": str(f.path), "size": f.size, "mtime": f.mtime_ns} for f in files]
        on_gpu, actors = _actor_pool(ray, self.request.device, self.actors, -(-len(items) // self.batch_size))
        with _data_settings(ray):
            dataset = _decoded(ray, items, self.batch_size, actors, self.config, self.request.input_size)
            dataset = _through_actors(ray, dataset, _Forward, {"request": self.request}, self.batch_size, on_gpu,
                                      actors)
            for block in _blocks(dataset):
                yield from _unpack(block, self.batch_size)


class RayQueryEngine(_RayRun):
    def __init__(self, request: IndexRequest, config: IndexConfig, input_size: int, search: SearchRequest,
                 batch_size: int, *, address: str | None = None, actors: int | None = None):
        super().__init__(address, actors)
        self.request, self.config, self.input_size = request, config, input_size
        self.search, self.batch_size = search, batch_size

    def answer(self, photos: list[Path]) -> Iterator[list[dict]]:
        return self._streamed(photos)

    def _run(self, ray, photos: list[Path]) -> Iterator[list[dict]]:
        on_gpu, actors = _actor_pool(ray, self.request.device, self.actors, -(-len(photos) // self.batch_size))
        with _data_settings(ray):
            dataset = _decoded(ray, [{"path": str(p)} for p in photos], self.batch_size, actors, self.config,
                               self.input_size)
            dataset = _through_actors(ray, dataset, _Answer, {"request": self.request, "search": self.search},
                                      self.batch_size, on_gpu, actors)
            for block in _blocks(dataset):
                yield [json.loads(line) for line in block["line"]]


def _actor_pool(ray, device: str, actors: int | None, batches: int) -> tuple[bool, int]:
    """Whether each actor takes a GPU (a device other than cpu), and how many actors: `actors`, else one
    for each GPU or each CPU of the cluster, and never more than the run's `batches`."""
    on_gpu = device != "cpu"
    resources = ray.cluster_resources()
    if on_gpu and resources.get("GPU", 0) < 1:
        raise InvalidArgumentError(f"--device {device} asked for, but the Ray cluster has no GPU",
                                   "use --device cpu, or a cluster with GPU nodes")
    pool = actors or (int(resources.get("GPU", 0)) if on_gpu else max(1, int(resources.get("CPU", 1))))
    return on_gpu, min(pool, batches)


def _decoded(ray, items: list[dict], batch_size: int, actors: int, config: IndexConfig, size: int):
    """The items (each naming a "path") as a dataset, decoded in CPU tasks a block at a time; a block
    goes to one actor, so a run of a few batches still has a block for each actor (a pool holds no more
    actors than the run has batches)."""
    blocks = max(-(-len(items) // max(_BLOCK_FILES, batch_size)), actors)
    dataset = ray.data.from_items(items, override_num_blocks=blocks)
    return dataset.map_batches(_decode, fn_kwargs={"config": config, "size": size, "max_pixels": max_pixels()},
                               batch_size=None, batch_format="numpy", num_cpus=_DECODE_CPUS)


def _through_actors(ray, dataset, actor: type, arguments: dict, batch_size: int, on_gpu: bool, actors: int):
    """The dataset mapped by a pool of `actors` instances of `actor(**arguments)`, a batch at a time."""
    return dataset.map_batches(actor, fn_constructor_kwargs=arguments, batch_size=batch_size, batch_format="numpy",
                               compute=ray.data.ActorPoolStrategy(size=actors), num_gpus=1 if on_gpu else 0,
                               num_cpus=1 if on_gpu else _CPU_ACTOR_CPUS)


def _blocks(dataset) -> Iterator[dict]:
    """The dataset's blocks in order, up to the first failure an actor returned, which is then raised:
    the rows before it in its block are handed on first, as the local engine hands on the batches
    before a failing one."""
    for block in dataset.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2):
        failed = np.flatnonzero(block["failure"] != b"")
        if not len(failed):
            yield block
            continue
        if failed[0]:
            yield {name: column[:failed[0]] for name, column in block.items()}
        raise pickle.loads(block["failure"][failed[0]])


@contextlib.contextmanager
def _data_settings(ray):
    """Ray Data set for a run, and as it was afterwards: rows in file order (ids as the local engine
    gives them, lines as it writes them), a failed block failing the run rather than being dropped, and
    no progress bars or log lines of its own, which would break into the run's bar."""
    context = ray.data.DataContext.get_current()
    data_logger = logging.getLogger("ray.data")
    saved = (context.execution_options.preserve_order, context.max_errored_blocks, context.enable_progress_bars,
             context.print_on_execution_start, data_logger.level)
    context.execution_options.preserve_order = True
    context.max_errored_blocks = 0
    context.enable_progress_bars = context.print_on_execution_start = False
    data_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        (context.execution_options.preserve_order, context.max_errored_blocks, context.enable_progress_bars,
         context.print_on_execution_start) = saved[:4]
        data_logger.setLevel(saved[4])


@contextlib.contextmanager
def _connected(ray, address: str | None):
    """Ray as the caller left it: joined if already initialised here, else connected to `address` or
    RAY_ADDRESS, else started on this machine (even where a `ray start` cluster runs here: joining one is
    asked for by address), for the run, and shut down after it. Ray's notices while starting (such as
    that of its token authentication) are kept from the run's output; its errors are not."""
    if ray.is_initialized():
        yield
        return
    ray_logger = logging.getLogger("ray")
    level = ray_logger.level
    ray_logger.setLevel(logging.ERROR)
    cluster = address or os.environ.get("RAY_ADDRESS") or None
    try:
        ray.init(address=cluster or "local", include_dashboard=False, log_to_driver=False, configure_logging=False,
                 runtime_env={"env_vars": {"PYTHONPATH": _import_path()}})
    except ConnectionError as error:
        # Ray's own rule: RAY_ADDRESS overrides "auto"
        joined = os.environ.get("RAY_ADDRESS") if cluster == "auto" and os.environ.get("RAY_ADDRESS") else cluster
        raise InvalidArgumentError(
            f"cannot join the Ray cluster at {joined} ({error})",
            "check the address and that the cluster is up; a cluster with token authentication (Ray's default "
            "when it has a token) also needs RAY_AUTH_MODE=token here, with its token in RAY_AUTH_TOKEN or "
            "~/.ray/auth_token") from None
    finally:
        ray_logger.setLevel(level)
    try:
        yield
    finally:
        ray.shutdown()


def _import_path() -> str:
    """PYTHONPATH for the run's workers: the folder this process imported refsearch from first, so that
    they import the same package. Ray puts the run's current folder on its workers' import path, and
    from the folder holding a clone named refsearch, that clone would otherwise be imported there as an
    empty namespace package in place of an editable install's."""
    package_root = str(Path(__file__).resolve().parents[2])
    return os.pathsep.join([package_root, *filter(None, [os.environ.get("PYTHONPATH")])])


def _decode(batch: dict, config: IndexConfig, size: int, max_pixels: int) -> dict:
    """A block of images decoded, as this run's process would decode them (under its pixel limit)."""
    with pixel_limit(max_pixels):
        return _decoded_block(batch, config, size)


def _decoded_block(batch: dict, config: IndexConfig, size: int) -> dict:
    count = len(batch["path"])
    pixels = np.zeros((count, size, size), np.uint8)
    histograms = np.zeros((count, config.grid * config.grid, config.hist_bins), np.float32)
    sizes = np.zeros((count, 2), np.int64)
    digests, errors, hints = [""] * count, [""] * count, [""] * count
    for row, path in enumerate(batch["path"]):
        prepared = prepare_safely(Path(path), config, size)
        if isinstance(prepared, ImageError):
            errors[row], hints[row] = prepared.reason, prepared.hint
            continue
        pixels[row], histograms[row] = prepared.network_input, prepared.histograms
        sizes[row] = prepared.original_size
        digests[row] = prepared.digest or ""
    return {**batch, "pixels": pixels, "histograms": histograms, "original_size": sizes,
            "digest": np.array(digests), "error": np.array(errors), "hint": np.array(hints)}


def _prepared(batch: dict) -> list[PreparedImage | ImageError]:
    """The rows of a decoded block as `prepare_safely` gave them."""
    return [ImageError(path, str(error), str(hint)) if error else
            PreparedImage(pixels, histograms, tuple(size), str(digest) or None)
            for path, error, hint, pixels, histograms, size, digest in
            zip(batch["path"], batch["error"], batch["hint"], batch["pixels"], batch["histograms"],
                batch["original_size"].tolist(), batch["digest"])]


class _Actor:
    """An actor of a run's pool: `start` once, then `run` on every batch it is given. An error the user
    can fix (a RefsearchError, or one of the file errors the command line reports as the user's) comes
    back as the batch's "failure" column, for the run's process to raise: were it raised here, Ray would
    wrap it in its own exception, or keep only its text when the actor is starting, and log its traceback.
    A batch that fails in `run` keeps the columns of `unanswered`, so that it shares a block with the
    batches that did not fail; an actor that failed to start fails every batch of its blocks alike."""

    def __init__(self, **arguments):
        self.failure = b""
        try:
            self.start(**arguments)
        except USER_ERRORS as error:
            self.failure = pickle.dumps(error)

    def __call__(self, batch: dict) -> dict:
        rows = len(batch["path"])
        if self.failure:
            return {"failure": np.full(rows, self.failure, dtype=object)}
        try:
            columns = self.run(batch)
        except USER_ERRORS as error:
            return {**self.unanswered(batch), "failure": np.full(rows, pickle.dumps(error), dtype=object)}
        return {**columns, "failure": np.full(rows, b"", dtype=object)}

    def start(self, **arguments) -> None:
        raise NotImplementedError

    def run(self, batch: dict) -> dict:
        raise NotImplementedError

    def unanswered(self, batch: dict) -> dict:
        """`run`'s columns for a batch it could not answer."""
        raise NotImplementedError


class _Forward(_Actor):
    """The network opened once, run on every batch."""

    def start(self, request: NetworkRequest) -> None:
        self.network = request.create()

    def run(self, batch: dict) -> dict:
        readable = np.flatnonzero(batch["error"] == "")
        columns = self.unanswered(batch)
        if len(readable):
            images = [PreparedImage(batch["pixels"][row], batch["histograms"][row], (0, 0), None) for row in readable]
            found = extract(self.network, images)
            columns["logits"][readable], columns["global"][readable] = found.logits, found.global_
            columns["cells"][readable] = found.cells
        return columns

    def unanswered(self, batch: dict) -> dict:
        # zeros, so that feature blocks share their columns; the build never reads unreadable rows
        count, network = len(batch["path"]), self.network
        kept = {name: batch[name] for name in ("path", "size", "mtime", "original_size", "digest", "error", "hint",
                                               "histograms")}
        return {**kept, "logits": np.zeros((count, 1000), np.float32),
                "global": np.zeros((count, network.global_dim), np.float32),
                "cells": np.zeros((count, network.grid * network.grid, network.cell_dim), np.float32)}


class _Answer(_Actor):
    """The index opened once (its backbone loaded), answering every batch."""

    def start(self, request: IndexRequest, search: SearchRequest) -> None:
        self.index = request.open()
        self.index.network.load()
        self.search = search

    def run(self, batch: dict) -> dict:
        photos = [Path(str(path)) for path in batch["path"]]
        lines = answer_lines(self.index, self.index.embed_batch(photos, _prepared(batch)), self.search)
        return {"line": np.array([json.dumps(line, separators=(",", ":")) for line in lines], dtype=object)}

    def unanswered(self, batch: dict) -> dict:
        return {"line": np.full(len(batch["path"]), "", dtype=object)}


def _unpack(block: dict, batch_size: int) -> Iterator[ExtractedBatch | Unreadable]:
    files = [ImageFile(Path(str(p)), int(s), int(m)) for p, s, m in zip(block["path"], block["size"], block["mtime"])]
    readable = []
    for row, (file, error, hint) in enumerate(zip(files, block["error"], block["hint"])):
        if error:
            yield Unreadable(file, ImageError(file.path, str(error), str(hint)))
        else:
            readable.append(row)
    for start in range(0, len(readable), batch_size):
        rows = np.array(readable[start:start + batch_size])
        raw = RawFeatures(block["logits"][rows], block["global"][rows], block["cells"][rows], block["histograms"][rows])
        yield ExtractedBatch([files[row] for row in rows], [tuple(size) for size in block["original_size"][rows].tolist()],
                             [str(block["digest"][row]) for row in rows], raw)
