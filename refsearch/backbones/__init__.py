"""Backbones by name. Third-party packages add theirs through the `refsearch.backbones` entry point
group: the entry point names a callable that takes `weights=None` (and, for a network that can be built
for several input sizes, `input_size=0`) and returns a Backbone.

Importing this package loads no torch: the registry and the device defaults are plain Python, and the
torch modules (`Backbone`, weights files, inference settings) load on first use of their names, so that
the query path, which runs the network on the inference runtime, never imports torch."""
from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..errors import BackboneError
from ..plugins import Registry
from .devices import default_batch_size, default_workers, forward_streams

if TYPE_CHECKING:
    from .base import Backbone, BackboneOutput, load_state_dict, state_fingerprint
    from .inference import PRECISIONS, InferenceSettings, inference_settings

# Names of the torch modules, imported on first access (PEP 562).
_LAZY_NAMES = {"Backbone": ".base", "BackboneOutput": ".base", "load_state_dict": ".base",
               "state_fingerprint": ".base", "PRECISIONS": ".inference", "InferenceSettings": ".inference",
               "inference_settings": ".inference"}

ENTRY_POINT_GROUP = "refsearch.backbones"
BackboneFactory = Callable[..., "Backbone"]
_BACKBONES: Registry[BackboneFactory] = Registry("backbone", ENTRY_POINT_GROUP, BackboneError)
register_backbone = _BACKBONES.register
available_backbones = _BACKBONES.names
backbone_factory = _BACKBONES.get


def create_backbone(name: str, weights: str | Path | None = None, device: str = "cpu",
                    input_size: int = 0, precision: str = "auto") -> Backbone:
    """Build the backbone registered as `name`, load its weights and move it to `device`, where its passes
    run in `precision` (auto: float16 autocast on a GPU, float32 on CPU; see `inference_settings`).
    `input_size` (0: the backbone's own) is the square it sees: a factory that takes `input_size` builds
    its network for it; one that does not has a fixed size, and another size is refused."""
    from .inference import inference_settings

    factory = _BACKBONES.get(name)
    torch_device = resolve_device(device)
    inference_settings(torch_device.type, precision)  # refuse a bad precision before loading any weights
    if input_size and "input_size" in inspect.signature(factory).parameters:
        backbone = factory(weights=weights, input_size=input_size)
    else:
        backbone = factory(weights=weights)
    if input_size and backbone.input_size != input_size:
        raise BackboneError(f"backbone {name} takes {backbone.input_size}-pixel inputs only, not {input_size}",
                            f"leave the input size at {backbone.input_size}")
    return backbone.run_on(torch_device, precision)


def resolve_device(device: str):
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BackboneError(f"--device {device} asked for, but PyTorch sees no CUDA GPU here", "use --device cpu")
    if device != "cpu" and not device.startswith("cuda"):
        raise BackboneError(f"unknown device {device!r}", "use cpu or cuda")
    return torch.device(device)


def _efficientnet_lite2(weights=None, input_size: int = 0) -> Backbone:
    from .efficientnet_lite import EfficientNetLite2

    return EfficientNetLite2(weights, input_size)


def _vgg19(weights=None, input_size: int = 0) -> Backbone:
    from .vgg import VGG19

    return VGG19(weights, input_size)


register_backbone("efficientnet-lite2")(_efficientnet_lite2)
register_backbone("vgg19")(_vgg19)

__all__ = ["PRECISIONS", "Backbone", "BackboneError", "BackboneOutput", "InferenceSettings", "available_backbones",
           "backbone_factory", "create_backbone", "default_batch_size", "default_workers", "forward_streams",
           "inference_settings", "load_state_dict", "register_backbone", "resolve_device", "state_fingerprint"]


def __getattr__(name: str):
    module = _LAZY_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
