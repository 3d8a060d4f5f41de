"""VGG-19, the paper's network: global descriptor fc6, cells relu5_4. Its weights are not bundled."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from .base import Backbone, BackboneError, BackboneOutput

TORCHVISION_FILE = "vgg19-dcbb9e9d.pth"
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
# relu2_2, relu3_4, relu4_4 and relu5_4 in torchvision's vgg19().features
_FEATURE_MAP_LAYERS = (8, 17, 26)
_RELU5_4 = 35


def torchvision_cache_file() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILE


def find_weights(weights: str | Path | None) -> Path:
    if weights is not None:
        return Path(weights)
    cached = torchvision_cache_file()
    if cached.is_file():
        return cached
    raise BackboneError(
        "vgg19 needs its ImageNet weights, and none were found",
        f"pass --weights FILE (a torchvision vgg19 state dict), or put {TORCHVISION_FILE} in {cached.parent} - "
        "on a machine with network, `python -c \"import torchvision; "
        "torchvision.models.vgg19(weights='IMAGENET1K_V1')\"` puts it there; or use the bundled default "
        "backbone, efficientnet-lite2")


class VGG19(Backbone):
    name = "vgg19"
    global_dim = 4096
    cell_dim = 512

    def __init__(self, weights: str | Path | None = None, input_size: int = 0):
        super().__init__(input_size)
        from torchvision.models import vgg19

        path = find_weights(weights)
        self.net = vgg19(weights=None)
        self.load_state(self.net, path)
        self.net.eval()
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1) * 255.0, persistent=False)

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels - self.mean) / self.std

    def features(self, x: torch.Tensor, feature_maps: bool = False) -> BackboneOutput:
        maps = []
        for index, layer in enumerate(self.net.features):
            x = layer(x)
            if index in _FEATURE_MAP_LAYERS and feature_maps:
                maps.append(x)
            if index == _RELU5_4:
                relu5_4 = x
        if feature_maps:
            maps.append(relu5_4)
        flat = torch.flatten(self.net.avgpool(x), 1)
        classifier = self.net.classifier
        fc6 = classifier[1](classifier[0](flat))
        logits = classifier[6](classifier[4](classifier[3](fc6)))
        return BackboneOutput(
            logits=logits,
            global_descriptor=fc6,
            cells=F.adaptive_avg_pool2d(relu5_4, self.grid),
            feature_maps=maps,
        )
