"""Backbone.extract on CPU: each forward pass runs single-threaded, and the calling thread's torch thread
count comes back afterwards, also when passes overlap in several threads."""
from __future__ import annotations

import os
import threading

import numpy as np
import torch
from torch import nn

from refsearch.backbones import Backbone, BackboneOutput, forward_streams


class ThreadCountSpy(Backbone):
    """Records torch's thread count during each pass; can hold a pass open until released."""

    name = "thread-count-spy"
    global_dim = 2
    cell_dim = 2
    input_size = 8

    def __init__(self, hold: threading.Event | None = None, entered: threading.Barrier | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1))
        self.seen: list[int] = []
        self.hold, self.entered = hold, entered

    def normalize(self, pixels):
        return pixels

    def features(self, x, feature_maps=False):
        self.seen.append(torch.get_num_threads())
        if self.entered is not None:
            self.entered.wait(timeout=10)
        if self.hold is not None:
            self.hold.wait(timeout=10)
        n = x.shape[0]
        return BackboneOutput(torch.zeros(n, 1000), torch.zeros(n, 2), torch.zeros(n, 2, 7, 7))


def _batch():
    return np.zeros((1, 8, 8), np.uint8)


def test_a_pass_runs_single_threaded_and_puts_the_thread_count_back():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        spy = ThreadCountSpy()
        spy.extract(_batch())
        assert spy.seen == [1]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_overlapping_passes_in_several_threads_are_each_single_threaded_and_leave_the_caller_alone():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    hold, entered = threading.Event(), threading.Barrier(3)
    spy = ThreadCountSpy(hold, entered)
    try:
        passes = [threading.Thread(target=spy.extract, args=(_batch(),)) for _ in range(2)]
        for thread in passes:
            thread.start()
        entered.wait(timeout=10)  # both passes are inside the network
        assert torch.get_num_threads() == 2
        hold.set()
        for thread in passes:
            thread.join(timeout=10)
        assert spy.seen == [1, 1]
        assert torch.get_num_threads() == 2
    finally:
        hold.set()
        torch.set_num_threads(before)


def test_one_stream_per_torch_thread_and_usable_core_on_cpu_and_one_on_a_gpu():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert forward_streams("cpu") == 1
        torch.set_num_threads(64)
        assert forward_streams("cpu") == min(64, len(os.sched_getaffinity(0)))
    finally:
        torch.set_num_threads(before)
    assert forward_streams("cuda") == 1
