"""VGG-19, the paper's network: global descriptor fc6, cells relu5_4. Its weights are not bundled: they
download on first use into torchvision's cache, unless REFSEARCH_OFFLINE is set."""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F

from .base import Backbone, BackboneError, BackboneOutput

# torchvision's VGG19_Weights.IMAGENET1K_V1; the name holds the first hex digits of the file's SHA-256.
TORCHVISION_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
TORCHVISION_FILE = TORCHVISION_URL.rsplit("/", 1)[1]
_SHA256_PREFIX = "dcbb9e9d"
# Set (to anything but 0) to never download: e.g. where the network blocks connections by dropping them,
# which would leave the download waiting for minutes before it fails.
OFFLINE_VARIABLE = "REFSEARCH_OFFLINE"
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
# relu2_2, relu3_4, relu4_4 and relu5_4 in torchvision's vgg19().features
_FEATURE_MAP_LAYERS = (8, 17, 26)
_RELU5_4 = 35


def torchvision_cache_file() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILE


def find_weights(weights: str | Path | None) -> Path:
    """The weights file to load: `weights` if given, else torchvision's cached copy, downloaded (548 MB,
    with a progress bar) if it is not there yet."""
    if weights is not None:
        return Path(weights)
    cached = torchvision_cache_file()
    if cached.is_file():
        return cached
    if os.environ.get(OFFLINE_VARIABLE, "") not in ("", "0"):
        raise _no_weights(cached, f"none in {cached.parent}, and {OFFLINE_VARIABLE} forbids downloading them")
    cached.parent.mkdir(parents=True, exist_ok=True)
    try:
        # It downloads to a temporary file and renames it when the hash matches: never a partial file here.
        torch.hub.download_url_to_file(TORCHVISION_URL, str(cached), hash_prefix=_SHA256_PREFIX, progress=True)
    except OSError as exc:  # no network, refused, timed out, HTTP errors (URLError is an OSError), disk full
        raise _no_weights(cached, f"none in {cached.parent}, and downloading them from {TORCHVISION_URL} "
                          f"failed ({getattr(exc, 'reason', None) or exc})") from None
    except RuntimeError as exc:  # what download_url_to_file raises for a hash mismatch
        raise _no_weights(cached, f"the download from {TORCHVISION_URL} was damaged ({exc})") from None
    return cached


def _no_weights(cached: Path, why: str) -> BackboneError:
    return BackboneError(
        f"vgg19 needs its ImageNet weights: {why}",
        f"pass --weights FILE (a torchvision vgg19 state dict), or put {TORCHVISION_FILE} (from "
        f"{TORCHVISION_URL}) in {cached.parent}; or use the bundled default backbone, efficientnet-lite2")


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
