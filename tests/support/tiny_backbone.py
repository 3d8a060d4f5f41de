"""A tiny, seeded convolutional backbone registered as "tiny-test": the build and search tests run the
real pipeline with it in milliseconds a batch instead of the real network's hundreds."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from refsearch.backbones import Backbone, BackboneOutput, register_backbone, state_fingerprint
from refsearch.config import IndexConfig

NAME = "tiny-test"
# Small PCA sizes and sample, so that a dozen photos exercise the fit, the sample and the later batches.
CONFIG = IndexConfig(backbone=NAME, pca_images=6, global_dim=8, cell_dim=8)


class TinyBackbone(Backbone):
    name = NAME
    input_size = 56
    global_dim = 24
    cell_dim = 12

    def __init__(self, weights=None):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(8, self.cell_dim, 3, stride=2, padding=1)
        self.head = nn.Linear(self.cell_dim, self.global_dim)
        self.classifier = nn.Linear(self.global_dim, 1000)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
        self.fingerprint = state_fingerprint(self.state_dict())
        self.eval()

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels - 127.0) / 128.0

    def features(self, x: torch.Tensor, feature_maps: bool = False) -> BackboneOutput:
        first = torch.relu(self.conv1(x))
        last = torch.relu(self.conv2(first))
        pooled = self.head(last.mean(dim=(2, 3)))
        return BackboneOutput(logits=self.classifier(torch.relu(pooled)), global_descriptor=pooled,
                              cells=F.adaptive_avg_pool2d(last, self.grid),
                              feature_maps=[first, last] if feature_maps else [])


register_backbone(NAME)(TinyBackbone)
