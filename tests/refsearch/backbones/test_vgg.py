"""VGG-19, the paper's network: its real loading path (a torchvision state dict), outputs, and errors."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from refsearch.backbones import BackboneError, create_backbone, state_fingerprint
from refsearch.backbones import vgg


@pytest.fixture(scope="module")
def vgg_weights(tmp_path_factory):
    """A torchvision vgg19 state dict (random weights: the real ones are 548 MB and need the network),
    stored in half precision to halve the file: (path, one of its tensors)."""
    from torchvision.models import vgg19

    torch.manual_seed(0)
    state = {name: tensor.half() for name, tensor in vgg19(weights=None).state_dict().items()}
    path = tmp_path_factory.mktemp("vgg") / "vgg19-random.pth"
    torch.save(state, path)
    return path, state["classifier.6.weight"].float()


@pytest.fixture(scope="module")
def vgg_backbone(vgg_weights):
    return create_backbone("vgg19", weights=vgg_weights[0])


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """torch.hub's folder pointed at an empty one, so no cached torchvision weights are found."""
    hub = tmp_path / "hub"
    hub.mkdir()
    monkeypatch.setattr(torch.hub, "_hub_dir", str(hub))
    return hub


def test_a_torchvision_state_dict_loads_with_a_fingerprint(vgg_backbone, vgg_weights, efficientnet_state):
    assert vgg_backbone.name == "vgg19"
    assert re.fullmatch(r"[0-9a-f]{16}", vgg_backbone.fingerprint)
    assert vgg_backbone.fingerprint != state_fingerprint(efficientnet_state)
    assert not vgg_backbone.training
    torch.testing.assert_close(vgg_backbone.net.classifier[6].weight, vgg_weights[1])


def test_outputs_fc6_and_relu5_4_cells_and_feature_maps(vgg_backbone):
    out = vgg_backbone.extract(np.random.default_rng(0).integers(0, 256, (2, 112, 112), dtype=np.uint8),
                               feature_maps=True)
    assert out.logits.shape == (2, 1000)
    assert out.global_descriptor.shape == (2, 4096)
    assert out.cells.shape == (2, 512, 7, 7)
    # relu2_2, relu3_4, relu4_4 and relu5_4: 128, 256, 512 and 512 channels at strides 2, 4, 8, 16
    assert [tuple(m.shape[1:]) for m in out.feature_maps] == [(128, 56, 56), (256, 28, 28), (512, 14, 14),
                                                             (512, 7, 7)]
    # relu outputs are non-negative, and fc6 is taken after its ReLU
    assert all((m >= 0).all() for m in out.feature_maps) and (out.global_descriptor >= 0).all()
    # at this size relu5_4 is already 7x7, so the cells are exactly relu5_4
    torch.testing.assert_close(out.cells, out.feature_maps[-1])
    # and a 224-pixel input pools its 14x14 relu5_4 down to the 7x7 grid
    full = vgg_backbone.extract(np.full((1, 224, 224), 100, np.uint8), feature_maps=True)
    assert full.cells.shape == (1, 512, 7, 7) and full.feature_maps[-1].shape == (1, 512, 14, 14)


def test_missing_weights_say_how_to_get_them_and_the_advice_works(empty_hub, vgg_weights):
    with pytest.raises(BackboneError) as caught:
        create_backbone("vgg19")
    message = str(caught.value)
    assert "--weights" in message
    assert str(empty_hub / "checkpoints") in message and vgg.TORCHVISION_FILE in message
    assert "IMAGENET1K_V1" in message and "efficientnet-lite2" in message
    # following the advice: the file in torch.hub's checkpoints folder is what vgg19 loads by default
    cached = empty_hub / "checkpoints" / vgg.TORCHVISION_FILE
    cached.parent.mkdir()
    cached.symlink_to(vgg_weights[0])
    assert vgg.find_weights(None) == cached
    assert vgg.find_weights(vgg_weights[0]) == vgg_weights[0]  # an explicit file wins


def test_another_networks_weights_are_refused_clearly(tmp_path, efficientnet_state):
    other_network = tmp_path / "efficientnet.pth"
    torch.save(efficientnet_state, other_network)
    with pytest.raises(BackboneError, match=r"efficientnet.pth does not hold vgg19 weights: 38 missing keys"):
        create_backbone("vgg19", weights=other_network)
