"""Gray adaptation: what `adapt_backbone` trains and writes, resuming, loading adapted weights, and the
shipped gray-adapted weights seeing luminance closer to how the ImageNet weights see colour."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from refsearch import adapt
from refsearch.adapt import AdaptSettings, adapt_backbone, trainable_parameter_names
from refsearch.backbones import BackboneError, create_backbone, state_fingerprint
from refsearch.backbones.base import load_state_dict
from refsearch.backbones.efficientnet_lite import GRAY_WEIGHTS
from refsearch.errors import InvalidArgumentError

# A tiny input keeps a training step of the real network to a fraction of a second.
QUICK = {"input_size": 64, "settings": AdaptSettings(epochs=2, batch_size=2), "progress": False}


@pytest.fixture(scope="module")
def photos(demo_photos, tmp_path_factory):
    folder = tmp_path_factory.mktemp("adapt") / "photos"
    folder.mkdir()
    for photo in demo_photos[:4]:
        shutil.copy2(photo, folder / photo.name)
    return folder


@pytest.fixture(scope="module")
def adapted(photos, tmp_path_factory):
    output = tmp_path_factory.mktemp("adapted") / "gray.pt"
    return output, adapt_backbone(photos, output, **QUICK)


def test_only_the_early_layers_and_batch_norm_are_trained_and_written(adapted, efficientnet_state):
    output, summary = adapted
    assert summary.photos == summary.labelled == 4 and summary.epochs == 2 and len(summary.losses) == 2
    payload = torch.load(output, weights_only=True)
    backbone = create_backbone("efficientnet-lite2", weights="imagenet", input_size=64)
    names = [name.removeprefix("net.") for name in trainable_parameter_names(backbone)]
    assert sorted(payload["state"]) == names and payload["input_size"] == 64  # named as in the ImageNet file
    assert "_conv_stem.weight" in names and "_fc.weight" not in names and "_bn1.weight" in names
    assert output.stat().st_size < 3_000_000  # a small file, not a copy of the network
    changed = [n for n in names if not torch.equal(payload["state"][n], efficientnet_state[n])]
    assert "_conv_stem.weight" in changed
    assert not output.with_name(output.name + ".checkpoint").exists()


def test_adapted_weights_load_on_top_of_the_imagenet_ones(adapted, efficientnet_state):
    output, _ = adapted
    backbone = create_backbone("efficientnet-lite2", weights=output, input_size=64)
    loaded = backbone.net.state_dict()
    adapted_state = load_state_dict(output)
    for name, tensor in loaded.items():
        expected = adapted_state.get(name, efficientnet_state[name])
        assert torch.equal(tensor, expected), name
    assert backbone.fingerprint == state_fingerprint(loaded) != state_fingerprint(efficientnet_state)


def test_an_interrupted_adaptation_resumes_after_its_last_epoch(photos, adapted, tmp_path, monkeypatch):
    reference, _ = adapted
    output = tmp_path / "gray.pt"
    steps = {"count": 0}
    real_step = adapt._step

    def failing_step(*args):
        steps["count"] += 1
        if steps["count"] == 3:  # the first step of the second epoch (two steps an epoch)
            raise KeyboardInterrupt
        return real_step(*args)

    monkeypatch.setattr(adapt, "_step", failing_step)
    with pytest.raises(KeyboardInterrupt):
        adapt_backbone(photos, output, **QUICK)
    assert not output.exists() and output.with_name("gray.pt.checkpoint").exists()
    monkeypatch.setattr(adapt, "_step", real_step)
    summary = adapt_backbone(photos, output, **QUICK)
    assert summary.resumed_from_epoch == 1
    resumed, uninterrupted = load_state_dict(output), load_state_dict(reference)
    for name in uninterrupted:
        torch.testing.assert_close(resumed[name], uninterrupted[name], atol=1e-5, rtol=1e-4)


def test_a_checkpoint_of_other_settings_or_unreadable_is_refused(photos, tmp_path, monkeypatch):
    output = tmp_path / "gray.pt"
    real_step, steps = adapt._step, []

    def failing_step(*args):
        steps.append(1)
        if len(steps) == 3:
            raise KeyboardInterrupt
        return real_step(*args)

    monkeypatch.setattr(adapt, "_step", failing_step)
    with pytest.raises(KeyboardInterrupt):
        adapt_backbone(photos, output, **QUICK)
    monkeypatch.undo()
    with pytest.raises(InvalidArgumentError, match="is a checkpoint of another adaptation"):
        adapt_backbone(photos, output, **{**QUICK, "settings": AdaptSettings(epochs=3, batch_size=2)})
    output.with_name("gray.pt.checkpoint").write_bytes(b"cut short")
    with pytest.raises(InvalidArgumentError, match="unreadable"):
        adapt_backbone(photos, output, **QUICK)


def test_bad_inputs_are_refused(tmp_path, adapted):
    with pytest.raises(InvalidArgumentError, match="holds no image files"):
        adapt_backbone(tmp_path, tmp_path / "out.pt", **QUICK)
    with pytest.raises(InvalidArgumentError, match="epochs and batch size"):
        AdaptSettings(epochs=0)
    with pytest.raises(BackboneError, match="adapts backbone efficientnet-lite2, not vgg19"):
        create_backbone("vgg19", weights=adapted[0])


@pytest.mark.skipif(not GRAY_WEIGHTS.is_file(), reason="the gray-adapted weights are not shipped")
def test_the_shipped_gray_weights_see_luminance_closer_to_how_imagenet_weights_see_colour(demo_photos):
    imagenet = create_backbone("efficientnet-lite2", weights="imagenet")
    gray = create_backbone("efficientnet-lite2")  # the default
    assert gray.fingerprint != imagenet.fingerprint
    size = imagenet.input_size
    colour = torch.from_numpy(np.stack([np.asarray(Image.open(p).convert("RGB").resize((size, size)))
                                        for p in demo_photos[:12]])).permute(0, 3, 1, 2).float()
    luma = (colour * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True).expand(-1, 3, -1, -1)
    with torch.inference_mode():
        target = F.log_softmax(imagenet.features(imagenet.normalize(colour)).logits, 1)

        def divergence(backbone):
            seen = F.log_softmax(backbone.features(backbone.normalize(luma)).logits, 1)
            return float(F.kl_div(seen, target, log_target=True, reduction="batchmean"))

        assert divergence(gray) < 0.8 * divergence(imagenet)
