"""The server tests' own copy of the demo index, open for the package and closed after it, so that nothing
they do can reach the session's demo index."""
from __future__ import annotations

import shutil

import pytest

import refsearch


@pytest.fixture(scope="package")
def served_index(demo_index_path, tmp_path_factory):
    copy = shutil.copytree(demo_index_path, tmp_path_factory.mktemp("served") / "demo.index")
    with refsearch.Index.open(copy) as index:
        yield index


@pytest.fixture(scope="package")
def copies_index(demo_dir, tmp_path_factory):
    """An index of a pug, an edited copy of it (halved, gray, captioned, recompressed) and two look-alike
    big cats, built with the default network."""
    from copies import edited_copy

    photos = tmp_path_factory.mktemp("copies") / "photos"
    photos.mkdir()
    for name in ("n02110958_pug.jpg", "n02128385_leopard.jpg", "n02128757_snow_leopard.jpg"):
        shutil.copy2(demo_dir / name, photos / name)
    edited_copy(demo_dir / "n02110958_pug.jpg", photos / "n02110958_pug_copy.jpg", scale=0.5, quality=40,
                gray=True, caption="BEST FRIENDS")
    path = photos.parent / "copies.index"
    refsearch.build_index(photos, path, progress=False)
    with refsearch.Index.open(path) as index:
        yield index
