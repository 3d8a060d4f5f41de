"""Shared fixtures for the test suite: the bundled demo photos and an index built from them once per
session, the full ImageNet sample (skipped when absent), and small synthetic image factories."""
from __future__ import annotations

import atexit
import io
import os
import shutil
import sys
import tempfile
from pathlib import Path

_TESTS = Path(__file__).resolve().parent

# The suite runs on small shared machines: one thread per library avoids OpenMP spinning against other
# processes, which slows a forward pass down tenfold there. Set these variables to override.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
# No test downloads vgg19's 548 MB of weights; the tests of the download fake it and lift this.
os.environ["REFSEARCH_OFFLINE"] = "1"
# The networks' exported graphs go to a cache of the test run's own (its processes share it), not the
# user's: each run exports what it runs, once.
if "REFSEARCH_CACHE" not in os.environ:
    os.environ["REFSEARCH_CACHE"] = tempfile.mkdtemp(prefix="refsearch-test-cache-")
    atexit.register(shutil.rmtree, os.environ["REFSEARCH_CACHE"], ignore_errors=True)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import refsearch  # noqa: E402

sys.path.insert(0, str(_TESTS / "support"))
import tiny_backbone  # noqa: E402  (registers the "tiny-test" backbone)

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

REPO = _TESTS.parent
DEMO_PHOTOS = REPO / "index_builds" / "demo" / "photos"
DEMO_QUERIES = REPO / "index_builds" / "demo" / "queries"
SAMPLE_DIR = REPO.parent / "shared" / "data" / "imagenet-sample"


# -- the bundled demo --------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def demo_dir() -> Path:
    assert DEMO_PHOTOS.is_dir(), f"bundled demo photos missing at {DEMO_PHOTOS}"
    return DEMO_PHOTOS


@pytest.fixture(scope="session")
def demo_photos(demo_dir) -> list[Path]:
    photos = sorted(demo_dir.glob("*.jpg"))
    assert len(photos) == 37, f"expected the 37 bundled demo photos, found {len(photos)}"
    return photos


@pytest.fixture(scope="session")
def demo_queries() -> list[Path]:
    return sorted(DEMO_QUERIES.glob("*.jpg"))


@pytest.fixture(scope="session")
def demo_build(demo_dir, tmp_path_factory):
    """(index path, BuildSummary) of the 37 demo photos, built once with the default configuration."""
    path = tmp_path_factory.mktemp("demo") / "demo.index"
    summary = refsearch.build_index(demo_dir, path, progress=False)
    return path, summary


@pytest.fixture(scope="session")
def demo_index_path(demo_build) -> Path:
    return demo_build[0]


@pytest.fixture(scope="session")
def demo_index(demo_index_path):
    """The demo index opened for searching; shared, so tests must not change it."""
    with refsearch.Index.open(demo_index_path) as index:
        yield index


@pytest.fixture
def copy_photos(demo_photos):
    """copy_photos(folder, photos) copies demo photos (Paths, or a count of the first ones) into folder."""

    def copy(folder: Path, photos=None) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        if photos is None:
            photos = demo_photos
        chosen = demo_photos[:photos] if isinstance(photos, int) else photos
        return [Path(shutil.copy2(photo, folder / photo.name)) for photo in chosen]

    return copy


# -- the tiny backbone ----------------------------------------------------------------------------
TINY_CONFIG = tiny_backbone.CONFIG


@pytest.fixture(scope="session")
def tiny_config() -> refsearch.IndexConfig:
    """Build settings for the tiny synthetic backbone (the crash driver uses the same)."""
    return TINY_CONFIG


@pytest.fixture(scope="session")
def tiny_build():
    """tiny_build(source, output, **options): build_index with the tiny backbone, one thread, batches of 2."""

    def build(source, output, **options):
        settings = {"batch_size": 2, "workers": 0, "streams": 1, "progress": False, **options}
        return refsearch.build_index(source, output, TINY_CONFIG, **settings)

    return build


# -- the full ImageNet sample (beside the repository, not in a fresh clone) -----------------------
@pytest.fixture(scope="session")
def sample_dir() -> Path:
    if not SAMPLE_DIR.is_dir() or not any(SAMPLE_DIR.glob("*.JPEG")):
        pytest.skip(f"the full ImageNet sample photos are not at {SAMPLE_DIR} (they sit beside the "
                    "repository in shared/data/imagenet-sample, not in a fresh clone)")
    return SAMPLE_DIR


# -- synthetic images -----------------------------------------------------------------------------
def _pattern(size: tuple[int, int], pattern: str, seed: int) -> np.ndarray:
    width, height = size
    if pattern == "gradient":
        x = np.linspace(0, 255, width)[None, :]
        y = np.linspace(0, 255, height)[:, None]
        return np.stack([np.broadcast_to(x, (height, width)), np.broadcast_to(y, (height, width)),
                         np.broadcast_to((x + y) / 2, (height, width))], axis=2).astype(np.uint8)
    if pattern == "noise":
        return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    if pattern == "checker":
        cells = ((np.arange(height)[:, None] // 8) + (np.arange(width)[None, :] // 8)) % 2
        return np.repeat((cells * 255).astype(np.uint8)[:, :, None], 3, axis=2)
    raise ValueError(pattern)


@pytest.fixture
def synthetic_image():
    """synthetic_image(size=(w, h), mode="RGB", pattern="gradient"|"noise"|"checker") -> PIL image."""

    def make(size=(64, 48), mode="RGB", pattern="gradient", seed=0) -> Image.Image:
        image = Image.fromarray(_pattern(size, pattern, seed), "RGB")
        return image if mode == "RGB" else image.convert(mode)

    return make


@pytest.fixture
def write_image(tmp_path, synthetic_image):
    """write_image(name, size=..., mode=..., pattern=..., folder=tmp_path, **save_options) -> Path."""

    def write(name: str, size=(64, 48), mode="RGB", pattern="gradient", folder: Path | None = None,
              seed=0, **save_options) -> Path:
        path = (folder or tmp_path) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        synthetic_image(size, mode, pattern, seed).save(path, **save_options)
        return path

    return write


def degrade_photo(path: Path, crop=(0.10, 0.06, 0.05, 0.10), scale=0.5, quality=60) -> Image.Image:
    """A grayscale, cropped (left, top, right, bottom fractions), downscaled, JPEG-recompressed copy."""
    image = Image.open(path).convert("L")
    width, height = image.size
    left, top, right, bottom = crop
    image = image.crop((round(width * left), round(height * top), width - round(width * right),
                        height - round(height * bottom)))
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                         Image.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    degraded = Image.open(buffer)
    degraded.load()
    return degraded


@pytest.fixture(scope="session")
def degrade():
    """degrade(path, ...) -> a grayscale, cropped, downscaled, JPEG-recompressed PIL copy of a photo."""
    return degrade_photo


# -- backbone weights -----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def efficientnet_state() -> dict[str, torch.Tensor]:
    """The bundled EfficientNet-Lite2 state dict."""
    from refsearch.backbones.efficientnet_lite import bundled_weights

    return torch.load(bundled_weights(), map_location="cpu", weights_only=True)


@pytest.fixture(scope="session")
def changed_efficientnet_weights(efficientnet_state, tmp_path_factory) -> Path:
    """The bundled EfficientNet-Lite2 weights with every classifier bias raised by 1, saved to a file."""
    state = {name: tensor.clone() for name, tensor in efficientnet_state.items()}
    state["_fc.bias"] += 1.0
    path = tmp_path_factory.mktemp("weights") / "efficientnet-lite2-changed.pth"
    torch.save(state, path)
    return path
