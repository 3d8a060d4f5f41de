"""How the network's work is spread on a device: forward passes side by side, images per pass, and the
threads that decode images while the passes run."""
from __future__ import annotations

import os
import sys


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def forward_streams(device: str) -> int:
    """How many forward passes to run side by side: on a GPU, two, so that the next batch is queued on
    the card while the last one's results are stored (the card runs them one after the other); on CPU,
    where each pass is single-threaded, one per thread torch would use (its count follows OMP_NUM_THREADS
    and torch.set_num_threads, so that budget is kept, whichever runtime runs the passes), at most one
    per usable core."""
    if device != "cpu":
        return 2
    return max(1, min(usable_cores(), _thread_budget()))


def _thread_budget() -> int:
    """The threads torch would use: its own count once it is loaded (set_num_threads changes it), else
    OMP_NUM_THREADS, which torch would start from; without either, no limit."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return torch.get_num_threads()
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else usable_cores()


def default_batch_size(device: str) -> int:
    # On a 2-core CPU this depthwise network runs fastest at small batches (see docs/benchmarks.md).
    return 4 if device == "cpu" else 64


def default_workers(device: str) -> int:
    """Decoding threads: on CPU two, leaving the cores to the forward passes; with the network on a GPU,
    one per usable core, since decoding is then what the build waits for."""
    return 2 if device == "cpu" else usable_cores()
