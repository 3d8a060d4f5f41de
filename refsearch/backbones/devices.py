"""How the network's work is spread on a device: forward passes side by side, images per pass, and the
threads that decode images while the passes run."""
from __future__ import annotations

import os


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def forward_streams(device: str) -> int:
    """How many forward passes to run side by side: on a GPU, two, so that the next batch is queued on
    the card while the last one's results are stored (the card runs them one after the other); on CPU,
    where each pass is single-threaded, one per thread torch would use (its count follows OMP_NUM_THREADS
    and torch.set_num_threads, so that budget is kept), at most one per usable core."""
    if device != "cpu":
        return 2
    import torch

    return max(1, min(usable_cores(), torch.get_num_threads()))


def default_batch_size(device: str) -> int:
    # On a 2-core CPU this depthwise network runs fastest at small batches (see docs/benchmarks.md).
    return 4 if device == "cpu" else 64


def default_workers(device: str) -> int:
    """Decoding threads: on CPU two, leaving the cores to the forward passes; with the network on a GPU,
    one per usable core, since decoding is then what the build waits for."""
    return 2 if device == "cpu" else usable_cores()
