"""A small index with planted curation cases, built once for the curation tests."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import refsearch

DEMO = Path(__file__).resolve().parents[3] / "index_builds" / "demo" / "photos"
PHOTOS = ["n01440764_tench.jpg", "n01443537_goldfish.jpg", "n01558993_robin.jpg", "n01614925_bald_eagle.jpg",
          "n02099712_Labrador_retriever.jpg", "n02108089_boxer.jpg", "n02110958_pug.jpg",
          "n02123394_Persian_cat.jpg", "n02128385_leopard.jpg", "n04146614_school_bus.jpg",
          "n07747607_orange.jpg", "n07749582_lemon.jpg", "n07873807_pizza.jpg"]
BANANA = "n07753592"
FIRE_ENGINE = "n03345487"


@dataclass(frozen=True)
class Planted:
    root: Path  # the indexed folder
    index: Path
    exact: set[str]  # paths relative to root: identical files
    near: set[str]  # one photo and two edited copies of it
    outlier: str  # random noise among photos
    mislabelled: str  # a daisy photo filed as a banana
    mislabelled_copy: str  # one of the copies, filed as a fire engine

    def relative(self, path: str) -> str:
        return Path(path).relative_to(self.root.resolve()).as_posix()


def _build(root: Path) -> Planted:
    photos = root / "photos"
    photos.mkdir(parents=True)
    for name in PHOTOS:
        shutil.copy2(DEMO / name, photos / name)
    (root / "extra").mkdir()
    shutil.copy2(DEMO / "n02123394_Persian_cat.jpg", root / "extra" / "n02123394_Persian_cat_copy.jpg")
    bus = Image.open(DEMO / "n04146614_school_bus.jpg").convert("RGB")
    width, height = bus.size
    bus.convert("L").crop((width // 10, height // 10, width - width // 10, height - height // 10)).save(
        root / "extra" / "n04146614_school_bus_gray_crop.jpg", quality=85)
    small = bus.resize((width // 2, height // 2), Image.BICUBIC)
    small.save(root / "extra" / f"{FIRE_ENGINE}_school_bus_small.jpg", quality=40)
    noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    Image.fromarray(noise, "RGB").save(root / "extra" / "noise.png")
    shutil.copy2(DEMO / "n11939491_daisy.jpg", root / "extra" / f"{BANANA}_banana.jpg")
    index = root.parent / "planted.index"
    refsearch.build_index(root, index, progress=False)
    return Planted(root=root, index=index,
                   exact={"photos/n02123394_Persian_cat.jpg", "extra/n02123394_Persian_cat_copy.jpg"},
                   near={"photos/n04146614_school_bus.jpg", "extra/n04146614_school_bus_gray_crop.jpg",
                         f"extra/{FIRE_ENGINE}_school_bus_small.jpg"},
                   outlier="extra/noise.png", mislabelled=f"extra/{BANANA}_banana.jpg",
                   mislabelled_copy=f"extra/{FIRE_ENGINE}_school_bus_small.jpg")


@pytest.fixture(scope="session")
def planted(tmp_path_factory) -> Planted:
    """12 demo photos plus: an identical copy of the Persian cat, a grayscale crop and a small
    recompressed copy of the school bus (the latter named as a fire engine), random noise, and the daisy
    photo named as a banana."""
    return _build(tmp_path_factory.mktemp("curation") / "collection")


@pytest.fixture(scope="session")
def planted_index(planted):
    """The planted index, opened; shared, so tests must not change it (copy it first: `own_index`)."""
    with refsearch.Index.open(planted.index) as index:
        yield index


@pytest.fixture
def own_index(planted, tmp_path):
    """A private copy of the planted index (same image files), for tests that change it."""
    path = tmp_path / "own.index"
    shutil.copytree(planted.index, path)
    with refsearch.Index.open(path) as index:
        yield index
