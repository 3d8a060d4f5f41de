"""Backbone.extract on CPU: each forward pass runs single-threaded, and the calling thread's torch thread
count comes back afterwards, also when passes overlap in several threads; passes run with the precision
and memory layout their device's inference settings choose."""
from __future__ import annotations

import os
import threading

import numpy as np
import pytest
import torch
from torch import nn

from refsearch import backbones
from refsearch.backbones import (
    Backbone,
    BackboneOutput,
    InferenceSettings,
    forward_streams,
    inference_settings,
)
from refsearch.errors import InvalidArgumentError


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


def test_one_stream_per_torch_thread_and_usable_core_on_cpu_and_two_on_a_gpu():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert forward_streams("cpu") == 1
        torch.set_num_threads(64)
        assert forward_streams("cpu") == min(64, len(os.sched_getaffinity(0)))
    finally:
        torch.set_num_threads(before)
    assert forward_streams("cuda") == 2


class SettingsSpy(Backbone):
    """Records how its pass ran: autocast on or off and to what, the input's layout, the weights' layout."""

    name = "settings-spy"
    global_dim = 2
    cell_dim = 2
    input_size = 8

    def __init__(self, weights=None):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)
        self.seen: dict = {}

    def normalize(self, pixels):
        return pixels / 255.0

    def features(self, x, feature_maps=False):
        self.seen = {"autocast": torch.is_autocast_enabled("cpu"), "dtype": self.conv(x).dtype,
                     "input_channels_last": x.is_contiguous(memory_format=torch.channels_last),
                     "weights_channels_last": self.conv.weight.is_contiguous(memory_format=torch.channels_last)}
        n = x.shape[0]
        return BackboneOutput(torch.zeros(n, 1000), torch.zeros(n, 2), torch.zeros(n, 2, 7, 7))


def test_auto_precision_is_float16_nhwc_and_pinned_on_a_gpu_and_plain_float32_on_cpu():
    assert inference_settings("cuda") == InferenceSettings(torch.float16, channels_last=True, pinned_transfer=True)
    assert inference_settings("cpu") == InferenceSettings(None, channels_last=False, pinned_transfer=False)
    assert inference_settings("cuda", "float32").autocast_dtype is None
    assert inference_settings("cuda", "bfloat16").autocast_dtype == torch.bfloat16
    assert inference_settings("cpu", "float16").autocast_dtype == torch.float16
    with pytest.raises(InvalidArgumentError, match="unknown precision 'half'.*auto, float32, float16, bfloat16"):
        inference_settings("cuda", "half")


def test_a_pass_runs_in_the_chosen_precision_and_layout():
    spy = SettingsSpy().run_on(torch.device("cpu"))
    spy.extract(np.zeros((2, 8, 8), np.uint8))
    assert spy.seen == {"autocast": False, "dtype": torch.float32, "input_channels_last": False,
                        "weights_channels_last": False}
    spy.run_on(torch.device("cpu"), "bfloat16")
    spy.extract(np.zeros((2, 8, 8), np.uint8))
    assert spy.seen["autocast"] and spy.seen["dtype"] == torch.bfloat16
    # what a GPU gets, less the pinned copy, which needs CUDA: NHWC input to NHWC weights, float16
    spy.inference = InferenceSettings(torch.float16, channels_last=True, pinned_transfer=False)
    spy.conv.to(memory_format=torch.channels_last)
    spy.extract(np.zeros((2, 8, 8), np.uint8))
    assert spy.seen == {"autocast": True, "dtype": torch.float16, "input_channels_last": True,
                        "weights_channels_last": True}
    assert not torch.is_autocast_enabled("cpu")  # autocast ends with the pass


def test_a_bad_precision_is_refused_before_any_weights_load(monkeypatch):
    built = []
    monkeypatch.setitem(backbones._BACKBONES._factories, "settings-spy", lambda weights=None: built.append(1))
    with pytest.raises(InvalidArgumentError, match="unknown precision"):
        backbones.create_backbone("settings-spy", precision="fp8")
    assert built == []
