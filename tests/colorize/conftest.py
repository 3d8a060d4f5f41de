"""Fixtures for the colorize tests: small synthetic colour scenes, their gray versions, the shared
network, and a tiny index of a few bundled demo photos."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import refsearch
from colorize.example_store import Example
from colorize.prior import PriorInputs, bin_centres


def scene(size=(128, 96), seed=0, shift=0) -> Image.Image:
    """A colour picture with regions a colorizer can tell apart by their gray levels and texture: a blue sky
    gradient, textured green ground, a red disc and a yellow square."""
    width, height = size
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.zeros((height, width, 3), np.float64)
    sky = y < height * 0.45
    rgb[sky] = np.stack([90 + 60 * y[sky] / height, 140 + 60 * y[sky] / height, np.full(sky.sum(), 235)], -1)
    ground = ~sky
    texture = rng.normal(0, 18, ground.sum())
    rgb[ground] = np.stack([50 + texture, 130 + texture, 40 + texture / 2], -1)
    disc = (x - width * 0.3 - shift) ** 2 + (y - height * 0.65) ** 2 < (min(width, height) * 0.16) ** 2
    rgb[disc] = (210, 40, 35)
    square = (abs(x - width * 0.72 - shift) < width * 0.1) & (abs(y - height * 0.25) < height * 0.12)
    rgb[square] = (240, 215, 40)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


def example(seed: int, grid=(3, 4)) -> Example:
    """A made-up training example of the chroma prior, different for each seed."""
    generator = torch.Generator().manual_seed(seed)
    bins = torch.zeros(len(bin_centres()), *grid)
    bins[seed % 50, :, :2] = 1.0
    bins[100 + seed % 50, :, 2:] = 1.0
    return Example(PriorInputs(torch.randn(6, *grid, generator=generator).half(),
                               torch.randn(5, generator=generator),
                               torch.randn(15, *grid, generator=generator),
                               torch.randn(2, *grid, generator=generator)),
                   bins.half(), torch.randn(2, *grid, generator=generator), 100.0 + seed)


@pytest.fixture(scope="session")
def make_example():
    return example


@pytest.fixture(scope="session")
def make_scene():
    return scene


@pytest.fixture(scope="session")
def colour_scene() -> Image.Image:
    return scene()


@pytest.fixture(scope="session")
def gray_scene(colour_scene) -> Image.Image:
    return colour_scene.convert("L")


@pytest.fixture(scope="session")
def backbone():
    from colorize.exemplar import default_network

    return default_network()


@pytest.fixture(scope="session")
def small_index(demo_photos, tmp_path_factory) -> Path:
    """An index of six bundled demo photos (a few seconds to build, unlike the full demo)."""
    folder = tmp_path_factory.mktemp("colorize-photos")
    chosen = [p for p in demo_photos if any(k in p.name for k in ("husky", "malamute", "Samoyed", "tabby",
                                                                   "orange", "lemon"))]
    for photo in chosen:
        (folder / photo.name).write_bytes(photo.read_bytes())
    path = tmp_path_factory.mktemp("colorize-index") / "small.index"
    refsearch.build_index(folder, path, progress=False)
    return path
