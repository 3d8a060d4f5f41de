"""Decoding images for the network, in order, on worker threads; an image that cannot be read becomes
its ImageError rather than stopping the run."""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..config import IndexConfig
from ..features import PreparedImage, load_prepared
from ..images import ImageError


def prepare_safely(path: Path, config: IndexConfig, input_size: int) -> PreparedImage | ImageError:
    try:
        return load_prepared(path, config, input_size)
    except ImageError as error:
        return error
    except Exception as exc:  # a decoder bug on one file must not stop a million-image build
        return ImageError(path, f"cannot decode ({type(exc).__name__}: {exc})")


def prepared_in_order(paths: Iterable[Path], config: IndexConfig, input_size: int,
                      workers: int, lookahead: int) -> Iterator[PreparedImage | ImageError]:
    """`prepare_safely` of each path, in order, decoded by `workers` threads (none: here) keeping up to
    `lookahead` images ahead of the caller."""
    if workers == 0:
        for path in paths:
            yield prepare_safely(path, config, input_size)
        return
    with ThreadPoolExecutor(workers) as pool:
        pending: deque = deque()
        remaining = iter(paths)
        for path in remaining:
            pending.append(pool.submit(prepare_safely, path, config, input_size))
            if len(pending) >= lookahead:
                break
        while pending:
            future = pending.popleft()
            following = next(remaining, None)
            if following is not None:
                pending.append(pool.submit(prepare_safely, following, config, input_size))
            yield future.result()
