"""A torch backbone as a `Network`: its passes' tensors handed back as numpy arrays."""
from __future__ import annotations

import numpy as np
import torch

from ..network_protocol import NetworkOutput
from .base import Backbone


class TorchNetwork:
    """`backbone` run by torch, on its device and in its precision."""

    runtime = "torch"
    runtime_version = torch.__version__

    def __init__(self, backbone: Backbone, note: str = ""):
        self.backbone = backbone
        self.note = note

    name = property(lambda self: self.backbone.name)
    fingerprint = property(lambda self: self.backbone.fingerprint)
    input_size = property(lambda self: self.backbone.input_size)
    grid = property(lambda self: self.backbone.grid)
    global_dim = property(lambda self: self.backbone.global_dim)
    cell_dim = property(lambda self: self.backbone.cell_dim)
    device = property(lambda self: str(self.backbone.device))

    def extract(self, luminance: np.ndarray, feature_maps: bool = False) -> NetworkOutput:
        output = self.backbone.extract(luminance, feature_maps=feature_maps)
        return NetworkOutput(_numpy(output.logits), _numpy(output.global_descriptor), _numpy(output.cells),
                             [_numpy(feature_map) for feature_map in output.feature_maps])


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.float().cpu().numpy()
