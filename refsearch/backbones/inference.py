"""How a backbone's forward passes run on a device: the precision they autocast to, the memory layout of
their input, and how the batch gets to the device.

Measured on CPU, where autocast runs too (bundled EfficientNet-Lite2, the 37 demo photos, against float32;
docs/benchmarks.md, "GPU"): float16 keeps every global descriptor within cosine 0.99995 and every cell
descriptor within 0.9996; bfloat16 falls to 0.98999 for one global descriptor and below 0.99 for cells of
10 of the photos, outside the 1e-2 bound the descriptors must keep. So on a GPU `auto` is float16;
bfloat16 stays a choice for weights whose activations could overflow float16's range (VGG's ReLUs are
unbounded; EfficientNet-Lite's are ReLU6). On CPU `auto` is float32: it keeps the bound trivially, and
the CPU figures in docs/benchmarks.md are float32.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import InvalidArgumentError

PRECISIONS = ("auto", "float32", "float16", "bfloat16")


@dataclass(frozen=True)
class InferenceSettings:
    """`autocast_dtype`: what the passes autocast to (None: float32 throughout). `channels_last`: the
    network's weights and input in NHWC layout, which cuDNN's convolutions and tensor cores run fastest
    in. `pinned_transfer`: batches copied to the device from page-locked memory without blocking, so the
    copy overlaps the work queued before it."""

    autocast_dtype: torch.dtype | None
    channels_last: bool
    pinned_transfer: bool


def inference_settings(device_type: str, precision: str = "auto") -> InferenceSettings:
    if precision not in PRECISIONS:
        raise InvalidArgumentError(f"unknown precision {precision!r}", f"use one of {', '.join(PRECISIONS)}")
    on_gpu = device_type == "cuda"
    if precision == "auto":
        precision = "float16" if on_gpu else "float32"
    dtype = None if precision == "float32" else getattr(torch, precision)
    return InferenceSettings(autocast_dtype=dtype, channels_last=on_gpu, pinned_transfer=on_gpu)
