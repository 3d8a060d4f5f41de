"""Backbones by name. Third-party packages add theirs through the `refsearch.backbones` entry point
group: the entry point names a callable that takes `weights=None` and returns a Backbone."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..plugins import Registry
from .base import Backbone, BackboneError, BackboneOutput, forward_streams, load_state_dict, state_fingerprint
from .inference import PRECISIONS, InferenceSettings, inference_settings

ENTRY_POINT_GROUP = "refsearch.backbones"
BackboneFactory = Callable[..., Backbone]
_BACKBONES: Registry[BackboneFactory] = Registry("backbone", ENTRY_POINT_GROUP, BackboneError)
register_backbone = _BACKBONES.register
available_backbones = _BACKBONES.names


def create_backbone(name: str, weights: str | Path | None = None, device: str = "cpu",
                    precision: str = "auto") -> Backbone:
    """Build the backbone registered as `name`, load its weights and move it to `device`, where its passes
    run in `precision` (auto: float16 autocast on a GPU, float32 on CPU; see `inference_settings`)."""
    factory = _BACKBONES.get(name)
    torch_device = resolve_device(device)
    inference_settings(torch_device.type, precision)  # refuse a bad precision before loading any weights
    backbone = factory(weights=weights)
    return backbone.run_on(torch_device, precision)


def resolve_device(device: str):
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BackboneError(f"--device {device} asked for, but PyTorch sees no CUDA GPU here", "use --device cpu")
    if device != "cpu" and not device.startswith("cuda"):
        raise BackboneError(f"unknown device {device!r}", "use cpu or cuda")
    return torch.device(device)


def _efficientnet_lite2(weights=None) -> Backbone:
    from .efficientnet_lite import EfficientNetLite2

    return EfficientNetLite2(weights)


def _vgg19(weights=None) -> Backbone:
    from .vgg import VGG19

    return VGG19(weights)


register_backbone("efficientnet-lite2")(_efficientnet_lite2)
register_backbone("vgg19")(_vgg19)

__all__ = ["PRECISIONS", "Backbone", "BackboneError", "BackboneOutput", "InferenceSettings", "available_backbones",
           "create_backbone", "forward_streams", "inference_settings", "load_state_dict", "register_backbone",
           "resolve_device", "state_fingerprint"]
