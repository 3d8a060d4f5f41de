"""Backbones by name. Third-party packages add theirs through the `refsearch.backbones` entry point
group: the entry point names a callable that takes `weights=None` and returns a Backbone."""
from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path
from typing import Callable

from .base import Backbone, BackboneError, BackboneOutput, load_state_dict, state_fingerprint

ENTRY_POINT_GROUP = "refsearch.backbones"
BackboneFactory = Callable[..., Backbone]
_REGISTRY: dict[str, BackboneFactory] = {}


def register_backbone(name: str) -> Callable[[BackboneFactory], BackboneFactory]:
    def add(factory: BackboneFactory) -> BackboneFactory:
        _REGISTRY[name] = factory
        return factory

    return add


def _load_entry_points() -> None:
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name not in _REGISTRY:
            try:
                _REGISTRY[entry.name] = entry.load()
            except Exception as exc:
                raise BackboneError(f"backbone plugin {entry.name!r} ({entry.value}) failed to load: {exc}") from exc


def available_backbones() -> list[str]:
    _load_entry_points()
    return sorted(_REGISTRY)


def create_backbone(name: str, weights: str | Path | None = None, device: str = "cpu") -> Backbone:
    """Build the backbone registered as `name`, load its weights and move it to `device`."""
    if name not in _REGISTRY:
        _load_entry_points()
    if name not in _REGISTRY:
        raise BackboneError(f"unknown backbone {name!r}; available: {', '.join(available_backbones())}")
    torch_device = resolve_device(device)
    backbone = _REGISTRY[name](weights=weights)
    return backbone.to(torch_device).eval()


def resolve_device(device: str):
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BackboneError(f"--device {device} asked for, but PyTorch sees no CUDA GPU here; use --device cpu")
    if device != "cpu" and not device.startswith("cuda"):
        raise BackboneError(f"unknown device {device!r}; use cpu or cuda")
    return torch.device(device)


def _efficientnet_lite2(weights=None) -> Backbone:
    from .efficientnet_lite import EfficientNetLite2

    return EfficientNetLite2(weights)


def _vgg19(weights=None) -> Backbone:
    from .vgg import VGG19

    return VGG19(weights)


register_backbone("efficientnet-lite2")(_efficientnet_lite2)
register_backbone("vgg19")(_vgg19)

__all__ = ["Backbone", "BackboneError", "BackboneOutput", "available_backbones", "create_backbone",
           "load_state_dict", "register_backbone", "resolve_device", "state_fingerprint"]
