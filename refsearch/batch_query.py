"""Batch queries for curation: every photo of a folder answered into a JSON Lines file, resumably.

Each line is one query's `SearchResponse.to_dict()`, or `{"query", "error", "hint"}` for a photo that
cannot be read. A rerun reads the lines already there and answers only the photos they do not name, so a
stopped run loses at most the batch it was writing: a torn last line is cut off before appending. An
exclusive `flock` on the output keeps a second run from writing the same file at the same time.
"""
from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from .errors import USER_FILE_ERRORS, InvalidArgumentError, OutputLockedError
from .images import ImageError, scan_images
from .search import Index

# what fails one photo, not the request: it becomes that photo's error line
PHOTO_ERRORS = (ImageError, *USER_FILE_ERRORS)


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
                 batch_size: int = 16, progress: bool = True, **options) -> BatchQuerySummary:
    """Answer every photo in `sources` (files or folders) with `index.search_batch(..., k, **options)`,
    appending a line per photo to `output`; photos already named there are skipped."""
    if batch_size < 1:
        raise InvalidArgumentError(f"batch size {batch_size} is not positive")
    files = query_files(sources)
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
            for start in range(0, len(todo), batch_size):
                batch = todo[start:start + batch_size]
                lines = _answer(index, batch, k, options)
                failed += sum("error" in line for line in lines)
                answered += len(lines)
                handle.write(b"".join(json.dumps(line, separators=(",", ":")).encode() + b"\n" for line in lines))
                handle.flush()
                os.fsync(handle.fileno())
                bar.update(len(batch))
    return BatchQuerySummary(str(output), len(files), answered, len(files) - len(todo), failed)


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


def _answer(index: Index, batch: list[Path], k: int, options: dict) -> list[dict]:
    try:
        return [r.to_dict() for r in index.search_batch(batch, k, **options)]
    except PHOTO_ERRORS:
        pass
    # one unreadable photo fails its whole batch: answer the batch one photo at a time to name it
    lines = []
    for path in batch:
        try:
            lines.append(index.search(path, k, **options).to_dict())
        except PHOTO_ERRORS as error:
            message, hint = (error.message, error.hint) if isinstance(error, ImageError) else (str(error), "")
            lines.append({"query": str(path), "error": message, "hint": hint})
    return lines
