"""Batch queries for curation: every photo of a folder answered into a JSON Lines file, resumably.

Each line is one query's `SearchResponse.to_dict()`, or `{"query", "error", "hint"}` for a photo that
cannot be read. A rerun reads the lines already there and answers only the photos they do not name, so a
stopped run loses at most the batch it was writing: a torn last line is cut off before appending. An
exclusive `flock` on the output keeps a second run from writing the same file at the same time.

An engine answers the photos (see `refsearch.engines`): "local" in this process, "ray" on a Ray cluster;
either way the lines come back in photo order and this process writes them.
"""
from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from .engines import create_query_engine
from .errors import InvalidArgumentError, OutputLockedError
from .images import scan_images
from .request import SearchRequest, search_request
from .search import Index
from .searcher import check_searchable


@dataclass(frozen=True)
class BatchQuerySummary:
    output: str
    queries: int        # photos found
    answered: int       # answered by this run
    already_done: int   # named by lines a previous run wrote
    failed: int         # error lines written by this run


def query_files(sources: Sequence[str | os.PathLike]) -> list[Path]:
    """The photos to answer, each once: files as given, folders walked as `build-index` walks them."""
    files: dict[Path, None] = {}
    for source in map(Path, sources):
        if source.is_dir():
            files.update(dict.fromkeys(Path(f.path) for f in scan_images(source).files))
        elif source.exists():
            files[source.resolve()] = None
        else:
            raise FileNotFoundError(f"{source}: no such file or folder")
    return list(files)


def query_folder(index: Index, sources: Sequence[str | os.PathLike], output: str | os.PathLike, k: int = 10, *,
                 batch_size: int | None = None, workers: int | None = None, streams: int | None = None,
                 progress: bool = True, engine: str = "local", engine_options: dict | None = None,
                 request: SearchRequest | None = None, **options) -> BatchQuerySummary:
    """Answer every photo in `sources` (files or folders) as `index.search_batch(..., k, **options)`
    (or with `request`) would, appending a line per photo to `output`; photos already named there are
    skipped. The local
    engine decodes on `workers` threads and runs `streams` forward passes side by side, batches of
    `batch_size` (each as `build_index` defaults it for the index's device); `engine_options` are the
    engine's own (the ray engine's `address` and `actors`)."""
    from .backbones import default_batch_size, default_workers, forward_streams

    device = index.network.device
    batch_size = default_batch_size(device) if batch_size is None else batch_size
    workers = default_workers(device) if workers is None else workers
    streams = forward_streams(device) if streams is None else streams
    if batch_size < 1 or workers < 0 or streams < 1:
        raise InvalidArgumentError("batch size and streams must be at least 1, and workers at least 0")
    request = search_request(request, k, **options)  # a bad option is refused now, not in every batch
    check_searchable(index)
    files = query_files(sources)
    answering = create_query_engine(engine, index, request, batch_size, workers, streams, **(engine_options or {}))
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputLockedError(f"{output} is being written by another batch query",
                                    "wait for it to finish, or write to another file") from None
        done = _answered_queries(handle, output)
        todo = [f for f in files if str(f) not in done]
        answered = failed = 0
        with tqdm(total=len(todo), unit="img", desc="querying", disable=not progress) as bar:
            for lines in answering.answer(todo):
                _check_order(engine, lines, todo[answered:answered + len(lines)])
                failed += sum("error" in line for line in lines)
                answered += len(lines)
                handle.write(b"".join(json.dumps(line, separators=(",", ":")).encode() + b"\n" for line in lines))
                handle.flush()
                os.fsync(handle.fileno())
                bar.update(len(lines))
        if answered != len(todo):
            raise RuntimeError(f"the {engine} query engine answered {answered} of {len(todo)} photos")
    return BatchQuerySummary(str(output), len(files), answered, len(files) - len(todo), failed)


def _check_order(engine: str, lines: list[dict], photos: list[Path]) -> None:
    """An engine's lines must name the photos it was given, in order: a line written for the wrong photo
    would make a rerun skip the right one."""
    named = [line.get("query") for line in lines]
    if named != [str(photo) for photo in photos]:
        expected = [str(photo) for photo in photos[:3]]
        raise RuntimeError(f"the {engine} query engine answered {named[:3]}... where {expected}... were next")


def _answered_queries(handle, output: Path) -> set[str]:
    """The queries named by complete lines, read a line at a time (the answers to a million photos do not
    fit in memory, their paths do); a torn last line (a run stopped mid-write) is cut off."""
    handle.seek(0)
    done: set[str] = set()
    complete = 0
    for number, line in enumerate(handle, 1):
        if not line.endswith(b"\n"):
            break
        try:
            done.add(json.loads(line)["query"])
        except (ValueError, KeyError, TypeError):
            raise InvalidArgumentError(f"{output}, line {number}: not a line a batch query writes",
                                       "choose another output file") from None
        complete += len(line)
    handle.truncate(complete)
    handle.seek(0, os.SEEK_END)
    return done
