"""VGG-19, the paper's network: its real loading path (a torchvision state dict), outputs, errors, and
the download of its weights into torchvision's cache (faked: the real file is 548 MB)."""
from __future__ import annotations

import re
import shutil
import urllib.error

import numpy as np
import pytest
import torch

from refsearch.backbones import BackboneError, create_backbone, state_fingerprint, vgg


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
        create_backbone("vgg19")  # the test suite runs with REFSEARCH_OFFLINE=1
    message = str(caught.value)
    assert "REFSEARCH_OFFLINE forbids downloading" in message and "--weights" in message
    assert str(empty_hub / "checkpoints") in message and vgg.TORCHVISION_FILE in message
    assert vgg.TORCHVISION_URL in message and "efficientnet-lite2" in message
    # following the advice: the file in torch.hub's checkpoints folder is what vgg19 loads by default
    cached = empty_hub / "checkpoints" / vgg.TORCHVISION_FILE
    cached.parent.mkdir()
    cached.symlink_to(vgg_weights[0])
    assert vgg.find_weights(None) == cached
    assert vgg.find_weights(vgg_weights[0]) == vgg_weights[0]  # an explicit file wins


@pytest.fixture
def downloads(monkeypatch):
    """Downloading allowed, with torch.hub's download replaced: set `.serve` to a file to hand out or an
    exception to raise; `.calls` records (url, destination, hash_prefix, progress)."""

    class FakeDownload:
        def __init__(self):
            self.serve: object = None
            self.calls: list[tuple] = []

        def __call__(self, url, dst, hash_prefix=None, progress=True):
            self.calls.append((url, dst, hash_prefix, progress))
            if isinstance(self.serve, BaseException):
                raise self.serve
            shutil.copy(self.serve, dst)

    fake = FakeDownload()
    monkeypatch.delenv(vgg.OFFLINE_VARIABLE)
    monkeypatch.setattr(torch.hub, "download_url_to_file", fake)
    return fake


def test_missing_weights_download_into_torchvisions_cache_with_a_progress_bar(empty_hub, downloads, vgg_weights):
    downloads.serve = vgg_weights[0]
    backbone = create_backbone("vgg19")
    cached = empty_hub / "checkpoints" / "vgg19-dcbb9e9d.pth"
    assert downloads.calls == [("https://download.pytorch.org/models/vgg19-dcbb9e9d.pth", str(cached),
                                "dcbb9e9d", True)]
    torch.testing.assert_close(backbone.net.classifier[6].weight, vgg_weights[1])
    assert vgg.find_weights(None) == cached and len(downloads.calls) == 1  # the next time: from the cache


def test_cached_weights_are_used_without_a_download(empty_hub, downloads, vgg_weights):
    downloads.serve = AssertionError("downloaded although the weights are cached")
    cached = empty_hub / "checkpoints" / vgg.TORCHVISION_FILE
    cached.parent.mkdir()
    cached.symlink_to(vgg_weights[0])
    torch.testing.assert_close(create_backbone("vgg19").net.classifier[6].weight, vgg_weights[1])
    assert downloads.calls == []


@pytest.mark.parametrize("failure, reason", [
    (urllib.error.URLError(OSError(-3, "Temporary failure in name resolution")), "name resolution"),
    (TimeoutError("timed out"), "timed out"),
    (RuntimeError('invalid hash value (expected "dcbb9e9d", got "0badf00d")'), "was damaged (invalid hash"),
])
def test_a_failed_download_is_the_clear_error_and_leaves_no_file(empty_hub, downloads, failure, reason):
    downloads.serve = failure
    with pytest.raises(BackboneError) as caught:
        create_backbone("vgg19")
    assert len(downloads.calls) == 1
    assert reason in caught.value.message and vgg.TORCHVISION_URL in caught.value.message
    assert "--weights FILE" in caught.value.hint and str(empty_hub / "checkpoints") in caught.value.hint
    assert not any((empty_hub / "checkpoints").iterdir())


def test_another_networks_weights_are_refused_clearly(tmp_path, efficientnet_state):
    other_network = tmp_path / "efficientnet.pth"
    torch.save(efficientnet_state, other_network)
    with pytest.raises(BackboneError, match=r"efficientnet.pth does not hold vgg19 weights: 38 missing keys"):
        create_backbone("vgg19", weights=other_network)
